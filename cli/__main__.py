"""``python -m vidinv.cli``: the ``vidinv`` command (:func:`cli.main.main`)."""
import sys

try:
    from vidinv.cli.main import main
except KeyboardInterrupt:  # Ctrl-C while Python is still importing: no traceback
    sys.stderr.write("vidinv: interrupted\n")
    sys.exit(130)

main()
