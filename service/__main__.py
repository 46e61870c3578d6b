import sys

from prescient.service.app.cli import main

sys.exit(main())
