"""A STAND-IN for the smacv2 package, for tests only: it is not smacv2 and does not run StarCraft II.

It follows smacv2's documented API (``smacv2.env.StarCraftCapabilityEnvWrapper``) so that our
``sc2v2`` wrapper can be tested where neither the game nor smacv2 can be installed.
"""
