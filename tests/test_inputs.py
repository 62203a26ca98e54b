"""Bad input to the XiNet algorithms gets a clear, early ValueError that names what is wrong."""

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.envs import FakeImageEnv, SimpleMultiObsEnv
from stable_baselines3.common.torch_layers import FlattenExtractor, NatureCNN

from sb3_xinet import PrunedShapeError, UnsupportedSpaceError, XiNetSAC
from sb3_xinet.cost import count_parameters
from sb3_xinet.schedule import Action, PruningSchedule
from tests.helpers import PRUNING, STEPS, SpacesEnv, make_model, observations


@pytest.mark.parametrize(
    ("env", "match"),
    [
        (lambda: FakeImageEnv(discrete=False), "not images"),
        (lambda: SimpleMultiObsEnv(), "Flatten Dict observations"),
        (lambda: gym.make("CartPole-v1"), "Box action space"),
    ],
    ids=["image", "dict", "discrete-action"],
)
def test_unsupported_spaces(env, match, model_class):
    with pytest.raises(UnsupportedSpaceError, match=match) as error:
        model_class("MlpPolicy", env())
    # a ValueError as every bad input, and the AssertionError SB3 raises for a space it does not support
    assert isinstance(error.value, ValueError) and isinstance(error.value, AssertionError)


@pytest.mark.parametrize(
    ("observation_space", "action_space", "cost_model"),
    [
        (gym.spaces.Discrete(5), gym.spaces.Box(-1, 1, (2,)), "params"),
        (gym.spaces.MultiDiscrete([4, 3]), gym.spaces.Box(-1, 1, (2,)), "time"),
        (gym.spaces.MultiBinary((3, 2)), gym.spaces.Box(-1, 1, (2,)), "params"),
        (gym.spaces.Box(-1, 1, (3, 2)), gym.spaces.Box(-2, 2, (2, 2)), "params"),
    ],
    ids=["discrete", "multi-discrete-time-cost", "multi-binary-2d", "box-2d-and-2d-actions"],
)
def test_flattenable_spaces_learn_prune_and_reload(observation_space, action_space, cost_model, model_class, tmp_path):
    """Spaces SB3's MlpPolicy reads through its preprocessing (one-hot codes, flattening), and Box actions of any
    shape: OFENet reads (and predicts) the flat preprocessed observation; actions come back in the space's shape."""
    env = SpacesEnv(observation_space, action_space)
    model = make_model(env, model_class=model_class, cost_model=cost_model).learn(STEPS)
    summary = model.pruning_summary()
    assert summary.params < summary.initial_params
    obs = np.stack([observation_space.sample() for _ in range(4)])
    actions, _ = model.predict(obs, deterministic=True)
    assert actions.shape == (4, *action_space.shape) and action_space.contains(actions[0].astype(action_space.dtype))
    model.save(tmp_path / "model")
    reloaded = model_class.load(tmp_path / "model", device="cpu")
    np.testing.assert_array_equal(reloaded.predict(obs, deterministic=True)[0], actions)


@pytest.mark.parametrize("cost_weight", [-1.0, "1", None, True, math.nan, math.inf])
def test_bad_cost_weight(cost_weight):
    with pytest.raises(ValueError, match="cost_weight"):
        XiNetSAC("MlpPolicy", "Pendulum-v1", cost_weight=cost_weight)


@pytest.mark.parametrize("threshold", [-0.1, 1.5, "0.1", None, math.nan])
def test_bad_prune_threshold(threshold):
    with pytest.raises(ValueError, match="prune_threshold"):
        XiNetSAC("MlpPolicy", "Pendulum-v1", prune_threshold=threshold)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(ofenet_pretrain_steps=-1), "ofenet_pretrain_steps"),
        (dict(ofenet_pretrain_steps=1.5), "ofenet_pretrain_steps"),
        (dict(pruning_start=-5), "pruning_start"),
        (dict(prune_freq=0), "prune_freq"),
        (dict(loss_scale_window=0), "loss_scale_window"),
        (dict(policy_kwargs=dict(gates="some")), "gates"),
        (dict(policy_kwargs=dict(gate_estimator="arm")), "gate_estimator"),
        (dict(policy_kwargs=dict(theta_learning_rate=0)), "theta_learning_rate"),
        (dict(policy_kwargs=dict(ofenet_kwargs=dict(state_units=[0, 4]))), "state_units"),
    ],
)
def test_bad_hyperparameters(kwargs, name, model_class):
    with pytest.raises(ValueError, match=name):
        model_class("MlpPolicy", "Pendulum-v1", **kwargs)


def test_ofenet_pretrains_one_aux_step_per_warm_up_transition_by_default(model_class, monkeypatch):
    """As OFENet (10,000 aux steps on 10,000 random transitions), also when ``learning_starts`` is set alone."""
    assert model_class("MlpPolicy", "Pendulum-v1", buffer_size=100).ofenet_pretrain_steps == 10_000
    model = model_class("MlpPolicy", "Pendulum-v1", learning_starts=60, gradient_steps=1, buffer_size=1000)
    aux_steps = []
    aux_step = model._aux_step
    monkeypatch.setattr(model, "_aux_step", lambda *args: aux_steps.append(args) or aux_step(*args))
    model.learn(61)
    assert model.ofenet_pretrain_steps == 60
    assert len(aux_steps) == 60 + 1  # the pretraining, then one aux step with the first SAC step


@pytest.mark.parametrize("use_expln", [False, True])
def test_gsde_prunes_its_exploration_matrix_with_the_actor(model_class, use_expln, tmp_path):
    """gSDE (as SB3's SAC actor): the log-std matrix loses the rows of the actor's removed last-layer units, the
    exploration matrices are sampled anew at the new width (as many as before), P(theta) counts the matrix, a
    save reloads, and the fold keeps the noise's spread for every state."""
    model = make_model(
        model_class=model_class,
        use_sde=True,
        sde_sample_freq=4,
        policy_kwargs={**PRUNING["policy_kwargs"], "use_expln": use_expln},
    )
    assert model.policy.expected_params().item() == count_parameters(model.policy.networks().values())
    model.learn(STEPS)
    actor = model.actor
    width = actor.latent_pi.out_features
    assert width < 32 and actor.log_std.shape == (width, 1) and actor.get_std().shape == (width, 1)
    assert actor.action_dist.exploration_mat.shape == (width, 1)
    actor.reset_noise(3)
    obs = th.as_tensor(observations())

    def spread() -> th.Tensor:
        _, _, kwargs = actor.dist_params(actor.state_features(obs), stochastic_gates=False)
        return kwargs["latent_sde"] ** 2 @ actor.get_std() ** 2

    before, actions = spread(), model.predict(observations(), deterministic=True)[0]
    model.end_pruning()
    th.testing.assert_close(spread(), before, rtol=1e-4, atol=1e-7)
    assert actor.action_dist.exploration_matrices.shape == (3, width, 1)
    folded = model.predict(observations(), deterministic=True)[0]
    np.testing.assert_allclose(folded, actions, atol=1e-6)  # the fold keeps the deterministic action
    model.save(tmp_path / "model")
    reloaded = model_class.load(tmp_path / "model", env=gym.make("Pendulum-v1"), device="cpu")
    np.testing.assert_array_equal(reloaded.predict(observations(), deterministic=True)[0], folded)
    reloaded.learn(50, reset_num_timesteps=False)


def test_gsde_needs_a_hidden_actor_layer():
    with pytest.raises(ValueError, match="gSDE needs at least one hidden layer"):
        XiNetSAC("MlpPolicy", "Pendulum-v1", use_sde=True, policy_kwargs=dict(net_arch=[]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(prune_freq=0), "prune_freq"),
        (dict(pruning_start=-1), "pruning_start"),
        (dict(pruning_start="never"), "pruning_start must be an integer, 'auto' or None"),
        (dict(pruning_start=500, pruning_end=500), "pruning_end"),
        (dict(pruning_start=None, pruning_end=-5), "pruning_end"),
    ],
)
def test_bad_schedules_are_refused_by_the_schedule_and_the_algorithm(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PruningSchedule.from_arguments(**kwargs)
    with pytest.raises(ValueError, match=message):
        make_model(**kwargs)


def test_a_schedule_of_none_never_regularizes_nor_folds():
    """None is "never": no regularizer, no removal, no fold, however long the run."""
    schedule = PruningSchedule.from_arguments(pruning_start=None, pruning_end="auto")
    assert schedule.start is None and schedule.end is None
    assert all(schedule.step(t, ended=False) is Action.NOTHING for t in range(0, 10**6, 997))
    folding = PruningSchedule(start=None, freq=10, end=50)
    assert [folding.step(t, ended=False) for t in (49, 50)] == [Action.NOTHING, Action.FOLD]
    assert folding.step(60, ended=True) is Action.NOTHING


def test_the_schedule_removes_every_freq_steps_from_the_start_of_a_run():
    schedule = PruningSchedule(start=100, freq=25, end=200)
    schedule.restart(90)
    actions = {t: schedule.step(t, ended=False) for t in range(90, 201)}
    assert [t for t, action in actions.items() if action is Action.REMOVE] == [115, 140, 165, 190]
    assert all(actions[t] is Action.NOTHING for t in range(90, 100))
    assert actions[200] is Action.FOLD


def test_loading_a_foreign_save(tmp_path):
    SAC("MlpPolicy", "Pendulum-v1", buffer_size=100).save(tmp_path / "sac")
    with pytest.raises(ValueError, match="not a XiNetSAC save"):
        XiNetSAC.load(tmp_path / "sac")


def test_loading_a_corrupt_file(tmp_path):
    path = tmp_path / "corrupt.zip"
    path.write_bytes(b"this is not a zip file")
    with pytest.raises(ValueError, match="zip"):
        XiNetSAC.load(path)


def test_loading_with_an_env_of_other_spaces(tmp_path):
    XiNetSAC("MlpPolicy", "Pendulum-v1", buffer_size=100).save(tmp_path / "model")
    with pytest.raises(ValueError, match="space"):
        XiNetSAC.load(tmp_path / "model", env=gym.make("MountainCarContinuous-v0"))


@pytest.mark.parametrize("policy", ["MultiInputPolicy", "CnnPolicy"])
def test_other_policy_names_say_what_is_supported(policy, model_class):
    with pytest.raises(ValueError, match=r"one policy, 'MlpPolicy'.*FlattenObservation"):
        model_class(policy, "Pendulum-v1")


@pytest.mark.parametrize(
    ("policy_kwargs", "message"),
    [
        (
            dict(features_extractor_class=FlattenExtractor, features_extractor_kwargs=dict(a=1)),
            "the XiNet policies' feature",
        ),
        (dict(features_extractor_class=NatureCNN), "ofenet_kwargs"),
        (dict(share_features_extractor=True), "share_features_extractor"),
        (dict(clip_mean=-1.0), "clip_mean"),
        (dict(clip_mean="2"), "clip_mean"),
        (dict(log_std_init="-3"), "log_std_init"),
    ],
)
def test_sac_policy_options_that_do_not_apply_are_refused(policy_kwargs, message):
    with pytest.raises(ValueError, match=message):
        XiNetSAC("MlpPolicy", "Pendulum-v1", policy_kwargs=policy_kwargs)


def test_log_std_init_sets_the_initial_action_spread(tmp_path):
    model = XiNetSAC("MlpPolicy", "Pendulum-v1", buffer_size=100, policy_kwargs=dict(log_std_init=-2.0))
    features = model.actor.state_features(th.as_tensor(np.random.default_rng(0).uniform(-1, 1, (8, 3)), dtype=th.float32))
    _, log_std, _ = model.actor.dist_params(features, stochastic_gates=False)
    th.testing.assert_close(log_std, th.full_like(log_std, -2.0))
    model.save(tmp_path / "model")
    assert XiNetSAC.load(tmp_path / "model").policy.log_std_init == -2.0


def test_parameters_of_a_differently_pruned_model_are_refused_clearly(model_class):
    pruned = make_model(model_class=model_class).learn(400)
    with pytest.raises(PrunedShapeError, match="do not fit this model's networks") as error:
        make_model(model_class=model_class).set_parameters(pruned.get_parameters())
    # a ValueError as every bad input, and the RuntimeError SB3's set_parameters raises for a misfit state dict
    assert isinstance(error.value, ValueError) and isinstance(error.value, RuntimeError)


def test_missing_parameters_raise_torchs_error_as_in_sb3(model_class):
    model = make_model(model_class=model_class)
    params = model.get_parameters()
    params["policy"].popitem()
    with pytest.raises(RuntimeError, match="Missing key") as error:
        model.set_parameters(params, exact_match=True)
    assert not isinstance(error.value, PrunedShapeError)


def test_a_learning_rate_above_1e_3_warns_that_the_critics_move_faster_than_sacs(tmp_path):
    with pytest.warns(UserWarning, match=r"learning_rate 0.01 is above 0.001: the critics read OFENet's \d+ features"):
        model = make_model(learning_rate=0.01)
    model.save(tmp_path / "model.zip")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        make_model(learning_rate=1e-3)
        XiNetSAC.load(tmp_path / "model.zip")  # said when the model was made, not again at every load
