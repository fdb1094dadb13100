import sys

from hiscene_sim.cli import main

sys.exit(main())
