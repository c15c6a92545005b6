"""Level-Based Foraging ids with 5 to 9 foods, which lbforaging 2.0 does not register (it stops at 4).

Importing this module registers ``Foraging{-2s}-{S}x{S}-{P}p-{F}f{-coop}-v3`` for F = 5..9, each
with the settings of lbforaging's own ``-4f`` id and ``max_num_food=F``. Use it through gymma's
module prefix: ``env_args.key=envs.lbf_tasks:Foraging-10x10-3p-5f-v3``.
"""
import gymnasium
import lbforaging  # noqa: F401  (registers the ids whose settings are copied)

EXTRA_FOOD_COUNTS = range(5, 10)


def _register_extra_food_ids():
    four_food_ids = [env_id for env_id in gymnasium.registry
                     if env_id.startswith("Foraging") and not env_id.startswith("Foraging-grid")
                     and "-4f" in env_id]
    for env_id in four_food_ids:
        spec = gymnasium.spec(env_id)
        for n_food in EXTRA_FOOD_COUNTS:
            new_id = env_id.replace("-4f", f"-{n_food}f")
            if new_id not in gymnasium.registry:
                gymnasium.register(id=new_id, entry_point=spec.entry_point,
                                   kwargs={**spec.kwargs, "max_num_food": n_food})


_register_extra_food_ids()
