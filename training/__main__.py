"""``python -m vidinv.training fs|psp --config ...``: see :mod:`training.cli`."""
from vidinv.training.cli import training_cli

if __name__ == "__main__":
    training_cli(prog_name="python -m vidinv.training")
