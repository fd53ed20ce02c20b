import gevent.monkey

gevent.monkey.patch_all()

from restreamer.main import main  # noqa: E402

main()
