import sys

from components.doctor.cli import main

sys.exit(main())
