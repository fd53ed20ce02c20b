import gevent.monkey

gevent.monkey.patch_all()

from backfiller.main import main  # noqa: E402

main()
