"""The demo world and the recipes of the shipped models. Importing it registers the world with
the edit engine (``sae.worlds``), which then labels, previews and induces on its own scenes."""

import sae.demo.supplies as _supplies
from sae.worlds import register as _register

_register(_supplies.DEMO_WORLD)
