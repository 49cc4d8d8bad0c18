"""Model families: keras.Models with their own train_step.

Every module here is imported, and each family registers itself with `@base.family`
in `base.FAMILIES` (name -> class): that registration is what makes a family
public (here and in `keras_gen`), loadable by name from a card, and serializable.
"""

import importlib
import pkgutil

from keras_gen.models import base

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

globals().update(base.FAMILIES)
__all__ = [name for name in sorted(base.FAMILIES)]
