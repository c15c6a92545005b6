"""Installs the framework's dependencies; the code runs from `src/` (EPyMARL's layout).

`pip install -e .` pulls the core dependencies; extras add optional environments:
`pip install -e .[mamujoco]`, `.[smax]`, `.[sc2]`; `.[wandb]` adds W&B logging; `.[compare]` for
src/compare.py (`.[ray]` to run its grids on Ray). Nothing is installed under generic top-level
names (`utils`, `modules`): `src/main.py` puts `src/` on the path itself.
"""
from setuptools import setup

setup(
    name="sale-marl",
    version="0.1.0",
    description="EPyMARL-compatible multi-agent RL framework with the SALE-MB model-based method",
    python_requires=">=3.10",
    packages=[],
    install_requires=[
        "torch>=2.1",
        "numpy>=1.24",
        "setuptools<81",  # sacred imports pkg_resources
        "sacred==0.8.7",
        "pymongo>=4",
        "PyYAML>=6",
        "gymnasium>=1.0,<1.4",
        "lbforaging>=2.0",
        "tensorboard>=2.14",
        "tqdm==4.70.1",  # progress line
        "psutil==7.2.2",  # available memory, checked against the replay buffer's size
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-xdist==3.8.0", "secantusdb==0.7.0b3"],
        "compare": ["tqdm==4.70.1", "rliable==1.2.0", "arch==7.2.0", "pandas==2.3.3", "scipy==1.17.1",
                    "matplotlib==3.11.2", "seaborn==0.13.2"],
        "ray": ["ray==2.60.0"],
        "mamujoco": ["gymnasium-robotics==1.4.2", "mujoco==3.17.0"],
        "smax": ["jax==0.10.2", "jaxlib==0.10.2", "jaxmarl==0.2.0", "flax==0.12.8", "chex==0.1.92"],
        # smacv2 itself is on no registry (README, "StarCraft II"); these are its pinned dependencies.
        "sc2": ["pysc2==4.0.0", "protobuf==3.20.3"],
        "wandb": ["wandb==0.25.0"],  # newer wandb needs protobuf>4.21, which smacv2 refuses
    },
)
