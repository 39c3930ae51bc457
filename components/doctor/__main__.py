"""`python -m components.doctor --stack homelab [--json] [--layer host ...]`:
runs the doctor (tools/doctor/cli.py)."""
import sys

from components.cli import run
from tools.doctor.cli import main

sys.exit(run("doctor", main))
