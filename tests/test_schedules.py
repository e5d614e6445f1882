import math
import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_papers import schedules
from lightning_papers.schedules import (
    Cyclical,
    OneCycle,
    Ramp,
    cyclical,
    cyclical_momentum,
    one_cycle,
    one_cycle_momentum,
    one_cycle_pct_start,
    ramp,
)


def _torch_sequence(make_scheduler, steps, optimizer_kwargs=None, momentum_key="momentum"):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1, **(optimizer_kwargs or {"momentum": 0.9}))
    sched = make_scheduler(opt)
    lrs, moms = [], []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0].get(momentum_key))
        opt.step()
        sched.step()
    return lrs, moms


def _paper_formula(t, base, peak, step_size, mode, gamma):
    cycle = math.floor(1 + t / (2 * step_size))
    x = abs(t / step_size - 2 * cycle + 1)
    scale = {"triangular": 1.0, "triangular2": 0.5 ** (cycle - 1), "exp_range": gamma**t}[mode]
    return base + (peak - base) * max(0.0, 1 - x) * scale


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
@pytest.mark.parametrize("step_size_up, step_size_down", [(1, None), (7, None), (250, None), (10, 30)])
@pytest.mark.parametrize("base_lr, max_lr", [(0.001, 0.006), (0.1, 3.0)])
def test_cyclical_matches_torch_cycliclr_exactly(mode, step_size_up, step_size_down, base_lr, max_lr):
    gamma = 0.9993
    # torch's triangular2 overflows 2.0 ** (cycle - 1) after 1024 cycles; stay below that
    steps = min(3000, 1000 * (step_size_up + (step_size_down or step_size_up)))

    def make(opt):
        return torch.optim.lr_scheduler.CyclicLR(
            opt,
            base_lr,
            max_lr,
            step_size_up,
            step_size_down,
            mode=mode,
            gamma=gamma,
            base_momentum=0.8,
            max_momentum=0.9,
        )

    torch_lrs, torch_moms = _torch_sequence(make, steps)
    ours = [cyclical(t, base_lr, max_lr, step_size_up, step_size_down, mode, gamma) for t in range(steps)]
    ours_mom = [cyclical_momentum(t, 0.8, 0.9, step_size_up, step_size_down, mode, gamma) for t in range(steps)]
    assert ours == torch_lrs  # bit-exact
    assert ours_mom == torch_moms
    sched = Cyclical(base_lr, max_lr, step_size_up, step_size_down, mode, gamma)
    assert [sched(t) for t in range(steps)] == torch_lrs
    assert [sched.momentum(t) for t in range(steps)] == torch_moms


@pytest.mark.parametrize("mode", ["triangular", "triangular2", "exp_range"])
@pytest.mark.parametrize("step_size", [1, 5, 2000])
def test_cyclical_equals_paper_formula(mode, step_size):
    for t in range(0, 20000, 7):
        expected = _paper_formula(t, 0.001, 0.006, step_size, mode, 0.9999)
        got = cyclical(t, 0.001, 0.006, step_size, policy=mode, gamma=0.9999)
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_cyclical_known_points():
    assert cyclical(0, 0.001, 0.006, 4) == 0.001
    assert cyclical(4, 0.001, 0.006, 4) == pytest.approx(0.006)
    assert cyclical(8, 0.001, 0.006, 4) == 0.001
    assert cyclical(12, 0.0, 1.0, 4, policy="triangular2") == pytest.approx(0.5)  # peak of the second cycle
    assert cyclical(4, 0.0, 1.0, 4, policy="exp_range", gamma=0.5) == pytest.approx(0.5**4)
    # triangular2 never overflows, even after thousands of cycles
    assert cyclical(10**6, 0.0, 1.0, 1, policy="triangular2") == 0.0


@pytest.mark.parametrize("anneal", ["cos", "linear"])
@pytest.mark.parametrize("three_phase", [False, True])
@pytest.mark.parametrize(
    "total_steps, pct_start, div_factor, final_div_factor",
    [(1000, 0.3, 25.0, 1e4), (4321, 0.45, 10.0, 100.0), (17, 0.25, 25.0, 1e4)],
)
def test_one_cycle_matches_torch_onecyclelr_exactly(
    anneal, three_phase, total_steps, pct_start, div_factor, final_div_factor
):
    def make(opt):
        return torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=0.8,
            total_steps=total_steps,
            pct_start=pct_start,
            anneal_strategy=anneal,
            div_factor=div_factor,
            final_div_factor=final_div_factor,
            three_phase=three_phase,
            base_momentum=0.85,
            max_momentum=0.95,
        )

    torch_lrs, torch_moms = _torch_sequence(make, total_steps)
    kwargs = dict(pct_start=pct_start, anneal=anneal, three_phase=three_phase)
    ours = [
        one_cycle(t, total_steps, 0.8, div_factor=div_factor, final_div_factor=final_div_factor, **kwargs)
        for t in range(total_steps)
    ]
    ours_mom = [one_cycle_momentum(t, total_steps, 0.85, 0.95, **kwargs) for t in range(total_steps)]
    assert ours == torch_lrs
    assert ours_mom == torch_moms
    sched = OneCycle(total_steps, 0.8, div_factor, final_div_factor, pct_start, anneal, three_phase)
    assert [sched(t) for t in range(total_steps)] == torch_lrs


def test_one_cycle_with_adam_betas_matches_torch():
    def make(opt):
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=300)

    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param], lr=0.1)
    sched = make(opt)
    for t in range(300):
        assert opt.param_groups[0]["lr"] == one_cycle(t, 300, 0.01)
        assert opt.param_groups[0]["betas"][0] == one_cycle_momentum(t, 300)
        opt.step()
        sched.step()


@pytest.mark.parametrize("mode", ["exponential", "linear"])
def test_ramp_exact_endpoints_and_monotone(mode):
    values = Ramp(1e-7, 10.0, 97, mode).values()
    assert values[0] == 1e-7
    assert values[-1] == 10.0
    assert all(b > a for a, b in zip(values, values[1:]))
    if mode == "exponential":
        ratios = [b / a for a, b in zip(values, values[1:])]
        assert max(ratios) == pytest.approx(min(ratios), rel=1e-9)
    else:
        diffs = [b - a for a, b in zip(values, values[1:])]
        assert max(diffs) == pytest.approx(min(diffs), rel=1e-6)


@settings(max_examples=50, deadline=None)
@given(
    start=st.floats(1e-8, 1e-2),
    factor=st.floats(1.5, 1e8),
    num_steps=st.integers(2, 500),
)
def test_ramp_endpoints_property(start, factor, num_steps):
    end = start * factor
    assert ramp(0, num_steps, start, end) == start
    assert ramp(num_steps - 1, num_steps, start, end) == end
    assert all(start <= ramp(i, num_steps, start, end) <= end for i in range(num_steps))


@pytest.mark.parametrize(
    "obj",
    [
        Cyclical(0.001, 0.006, 10, policy="exp_range", gamma=0.99),
        OneCycle(100, 0.1, three_phase=True),
        Ramp(1e-5, 1.0, 10, "linear"),
    ],
)
def test_schedule_objects_pickle(obj):
    clone = pickle.loads(pickle.dumps(obj))
    assert clone == obj
    assert [clone(t) for t in range(10)] == [obj(t) for t in range(10)]


def test_functions_pickle():
    assert pickle.loads(pickle.dumps(schedules.one_cycle)) is one_cycle


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: cyclical(0, 0.1, 1.0, 10, policy="cosine"), "Expected `policy` to be one of"),
        (lambda: Cyclical(0.1, 1.0, 10, policy="nope"), "Expected `policy` to be one of"),
        (lambda: Cyclical(0.1, 1.0, 0), "Expected `step_size_up` to be a positive"),
        (lambda: Cyclical(0.1, 1.0, 3, step_size_down=0), "Expected `step_size_down` to be a positive"),
        (lambda: Cyclical(1.0, 0.1, 10), "Expected `base_lr <= max_lr`"),
        (lambda: one_cycle(0, 10, 1.0, anneal="cosine"), "Expected `anneal` to be one of"),
        (lambda: one_cycle(0, 0, 1.0), "Expected `total_steps` to be a positive integer"),
        (lambda: one_cycle(0, 10, 1.0, pct_start=1.5), r"Expected `pct_start` to be a number in \[0, 1\]"),
        (lambda: one_cycle(11, 10, 1.0), r"Expected `step` to be a number in \[0, 10\]"),
        (lambda: OneCycle(10, 1.0, anneal="x"), "Expected `anneal` to be one of"),
        (lambda: OneCycle(0, 1.0), "Expected `total_steps` to be a positive integer"),
        (lambda: OneCycle(10, 1.0, pct_start=-0.1), r"Expected `pct_start` to be a number in \[0, 1\]"),
        (lambda: ramp(0, 10, 1e-3, 1.0, spacing="log"), "Expected `spacing` to be one of"),
        (lambda: ramp(0, 1, 1e-3, 1.0), "Expected `num_steps` to be an integer >= 2"),
        (lambda: ramp(1, 3, 0.0, 1.0), "Expected positive bounds"),
        (lambda: Ramp(0.0, 1.0, 3), "Expected positive bounds"),
        (lambda: Ramp(1e-3, 1.0, 1), "Expected `num_steps` to be an integer >= 2"),
        (lambda: Ramp(1e-3, 1.0, 5, spacing="cubic"), "Expected `spacing` to be one of"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_per_group_schedule_objects_equal_the_formulas():
    clr = Cyclical((1e-4, 1e-3), (1e-3, 6e-3), 5, 3, "triangular2")
    for t in range(40):
        assert clr.lrs(t) == [cyclical(t, b, m, 5, 3, "triangular2") for b, m in ((1e-4, 1e-3), (1e-3, 6e-3))]
    assert Cyclical(1e-3, (6e-3, 1e-2), 5)(5) == pytest.approx([6e-3, 1e-2], rel=1e-15)  # one base for all
    one = OneCycle(20, (0.5, 0.05), three_phase=True, anneal="linear")
    for t in range(20):
        expected = [one_cycle(t, 20, p, pct_start=0.45, anneal="linear", three_phase=True) for p in (0.5, 0.05)]
        assert one.lrs(t) == expected
    assert OneCycle.from_dict(one.to_dict()) == one
    assert pickle.loads(pickle.dumps(one)) == one


def test_one_cycle_stretch_continues_from_the_position_it_was_at():
    one = OneCycle(100, 1.0, three_phase=True, anneal="linear")
    longer = one.stretched(40, 200)  # the run grew from 100 to 200 steps at step 40
    assert longer(40) == one(40)  # no jump
    assert longer.run_total == 200 and longer.position(199) == pytest.approx(99)
    assert longer(199) == pytest.approx(one(99), rel=1e-12)
    # evenly spread: half-way through the rest is half-way through the rest of the cycle
    assert longer.position(40 + 159 // 2) == pytest.approx(40 + (99 - 40) * (159 // 2) / 159)
    assert one(150) == one(99)  # past the end: the final lr


@pytest.mark.parametrize(
    ("args", "expected"),
    [((True,), 0.45), ((False,), 0.3), ((True, None, 0.2), 0.4), ((True, 0.4, 0.2), 0.4), ((False, 0.25), 0.25)],
)
def test_one_cycle_pct_start(args, expected):
    assert one_cycle_pct_start(*args) == pytest.approx(expected)
    assert OneCycle(10, 1.0, pct_start=args[1] if len(args) > 1 else None,
                    annihilation_pct=args[2] if len(args) > 2 else None, three_phase=args[0]).pct_start == \
        pytest.approx(expected)


def _two_group_optimizer(kind):
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))
    groups = [{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.02}]
    return torch.optim.Adam(groups, betas=(0.9, 0.999)) if kind == "adam" else torch.optim.SGD(groups, momentum=0.9)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_plain_torch_loop_driven_by_the_core_equals_torch_onecyclelr_and_cycliclr(kind):
    """The core alone (no Lightning) drives an optimizer through 1cycle and CLR exactly as torch's schedulers do,
    per param group, lr and momentum / beta1 alike."""
    key = (lambda g: g["betas"][0]) if kind == "adam" else (lambda g: g["momentum"])
    cases = [
        (lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[0.5, 0.05], total_steps=60, three_phase=True),
         OneCycle(60, max_lr=(0.5, 0.05), pct_start=0.3, three_phase=True)),
        (lambda opt: torch.optim.lr_scheduler.CyclicLR(opt, [0.001, 0.002], [0.01, 0.02], step_size_up=7,
                                                       mode="triangular2"),
         Cyclical((0.001, 0.002), (0.01, 0.02), 7, policy="triangular2")),
    ]
    for make_torch, schedule in cases:
        reference, ours = _two_group_optimizer(kind), _two_group_optimizer(kind)
        scheduler = make_torch(reference)
        for step in range(60):
            schedules.apply_schedule(ours, schedule, step)
            assert schedules.read_lrs(ours) == [g["lr"] for g in reference.param_groups]
            assert schedules.read_momenta(ours) == [key(g) for g in reference.param_groups]
            for opt in (reference, ours):
                opt.zero_grad()
                sum(p.sum() for g in opt.param_groups for p in g["params"]).backward()
                opt.step()
            scheduler.step()
        assert all(torch.equal(p, q) for g, h in zip(reference.param_groups, ours.param_groups)
                   for p, q in zip(g["params"], h["params"]))


def test_write_groups_masks_momentum_and_checks_the_count():
    opt = _two_group_optimizer("sgd")
    schedules.write_groups([opt], [0.3, 0.4], momentum=0.5, cycled=[False, True], initial=True)
    assert schedules.read_lrs(opt) == [0.3, 0.4] and schedules.read_momenta(opt) == [0.9, 0.5]
    assert schedules.read_momenta([{"lr": 1.0}]) == [None]
    assert schedules.read_lrs([{"lr": 2, "initial_lr": 1}], initial=True) == [1]
    with pytest.raises(ValueError, match=r"^Expected one learning rate per param group \(2\), got 3$"):
        schedules.write_groups(opt, [0.1, 0.2, 0.3])


def test_one_cycle_peaks_and_steps_from_epochs():
    assert schedules.one_cycle_peaks(3.0, [0.4, 0.1, 0.0]) == (3.0, 0.75, 0.0)
    assert schedules.one_cycle_peaks(3.0, [0.0]) == (3.0,)
    # 10 batches, 4 per step: 3 steps an epoch (the last one partial); 2.5 epochs = 7.5 -> 8
    assert [schedules.steps_from_epochs(e, 10, 4) for e in (0.01, 1, 2.5)] == [1, 3, 8]
    with pytest.raises(ValueError, match=r"^Expected `epochs` to be a positive finite number, got 0$"):
        schedules.steps_from_epochs(0, 10)


def test_mode_is_deprecated_for_policy_and_spacing():
    with pytest.warns(DeprecationWarning, match=r"^`mode` is deprecated: pass `policy='triangular2'`$"):
        assert cyclical(12, 0.0, 1.0, 4, mode="triangular2") == cyclical(12, 0.0, 1.0, 4, policy="triangular2")
    with pytest.warns(DeprecationWarning, match=r"pass `policy='exp_range'`"):
        old = Cyclical(0.1, 1.0, 4, mode="exp_range", gamma=0.9)
    assert old == Cyclical(0.1, 1.0, 4, policy="exp_range", gamma=0.9) and old.policy == "exp_range"
    with pytest.warns(DeprecationWarning, match=r"pass `spacing='linear'`"):
        assert ramp(1, 3, 1.0, 3.0, mode="linear") == 2.0
    with pytest.warns(DeprecationWarning, match=r"pass `spacing='linear'`"):
        assert Ramp(1.0, 3.0, 3, mode="linear") == Ramp(1.0, 3.0, 3, "linear")
    with pytest.warns(DeprecationWarning, match=r"^`schedules.CYCLICAL_MODES` is deprecated: use `CYCLICAL_POLICIES`"):
        assert schedules.CYCLICAL_MODES == schedules.CYCLICAL_POLICIES
    with pytest.warns(DeprecationWarning, match=r"use `RAMP_SPACINGS`"):
        assert schedules.RAMP_MODES == schedules.RAMP_SPACINGS
    # a checkpoint written before the rename loads without a warning
    saved = {**Cyclical(0.1, 1.0, 4, policy="triangular2").to_dict()}
    saved["mode"] = saved.pop("policy")
    assert Cyclical.from_dict(saved).policy == "triangular2"
