"""A STAND-IN for the smacv2 package, for tests only: it is not smacv2 and does not run StarCraft II.

It follows smacv2's API (``smacv2.env.StarCraftCapabilityEnvWrapper``) with a toy battle, so that
our ``sc2v2`` wrapper can step battles where the game cannot be installed.
"""
