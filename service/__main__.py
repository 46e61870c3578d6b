import sys

from service.app.cli import main

sys.exit(main())
