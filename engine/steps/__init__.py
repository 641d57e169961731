"""Step kinds, one module each, named as in the spec (``md.py`` is ``kind: md``); importing this
package imports every module in it, which fills the registry (``ilcampaign.engine.step.REGISTRY``).
A new step kind is a new module here with a class that ``register`` decorates."""

import importlib
import pkgutil

for _module in sorted(pkgutil.iter_modules(__path__), key=lambda module: module.name):
    importlib.import_module(f"{__name__}.{_module.name}")
