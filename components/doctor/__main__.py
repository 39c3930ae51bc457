import sys

from components.cli import run
from components.doctor.cli import main

sys.exit(run("doctor", main))
