"""`python -m components.doctor`: the command-line form of the doctor, whose
code is in tools/doctor/ (this package holds only the shim that runs it)."""
