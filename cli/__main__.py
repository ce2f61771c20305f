"""``python -m cli ...`` runs the `recommender` command."""
import sys

from cli.main import main

sys.exit(main())
