import gevent.monkey

gevent.monkey.patch_all()

from downloader.main import main  # noqa: E402

main()
