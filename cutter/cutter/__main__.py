import gevent.monkey

gevent.monkey.patch_all()

from cutter.main import main  # noqa: E402

main()
