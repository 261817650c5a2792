"""Guidance recipes as data, and the one rule that combines two branches.

Every method of the paper is the same rule (Eq. 3, 7, 8):

    v = ω · v_strong + (1 − ω) · v_weak

where each branch is (model, condition, γ). Only the branches differ:

    method       strong branch              weak branch
    unguided     main, c,  γ=0              —
    CFG          main, c,  γ=0              main, ∅,   γ=0            (Eq. 3)
    AG           main, c,  γ=0              aux,  c,   γ=0            (AutoGuidance)
    ICG          main, c,  γ=0              main, c',  γ=0            (c' an independent random class)
    SG           main, c,  γ_s              main, c,   γ_w > γ_s      (Eq. 6-7)
    CFG+SG       main, c,  γ_s              main, ∅,   γ_w            (Eq. 8)
    AG+SG        main, c,  γ_s              aux,  c,   γ_w            (Fig. 7)
    SG_FID       main, c,  cos 0→0.6        aux,  c,   cos 0.6→0      (Appendix B.1)

A recipe is a plain dict (YAML-friendly):

    {"name": "sg", "omega": 2.5,
     "strong": {"model": "main", "cond": "class", "gamma": 0.5},
     "weak":   {"model": "main", "cond": "class", "gamma": 0.9}}

``cond`` is "class", "null" (∅; YAML's bare ``cond: null``, read as None, means the same) or
"random" (ICG's independent random condition).

γ is a float or a schedule over the sampling steps:
    {"schedule": "cosine", "start": 0.6, "end": 0.0}     (also "linear", "constant")
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from .errors import ConfigError
from .models.sparsity import check_gamma

CONDITIONS = ("class", "null", "random")
SCHEDULES = ("constant", "linear", "cosine")
RECIPE_KEYS = {"name", "omega", "strong", "weak", "note", "guided_channels"}
BRANCH_KEYS = {"model", "cond", "gamma"}


# ---------------------------------------------------------------------------------------------
# The rule
# ---------------------------------------------------------------------------------------------

def combine(v_strong, v_weak, omega: float, channels: int | None = None):
    """Eq. 3 / 7 / 8: ω·v_strong + (1 − ω)·v_weak, on all latent channels (N, C, H, W).

    ``channels``: guide only the first ``channels`` latent channels and keep v_strong on the rest,
    as DiT's, SiT's and LightningDiT's ``forward_with_cfg`` do (3 of 4: a quirk their authors keep
    so that their published CFG numbers reproduce). None, the default, is Eq. 3 as printed."""
    guided = v_weak + omega * (v_strong - v_weak)
    if channels is None or channels >= v_strong.shape[1]:
        return guided
    return torch.cat([guided[:, :channels], v_strong[:, channels:]], dim=1)


# ---------------------------------------------------------------------------------------------
# γ schedules
# ---------------------------------------------------------------------------------------------

def _check_schedule(spec, where: str):
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        check_gamma(spec, f"{where}.gamma")
        return
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}.gamma={spec!r} is neither a number nor a schedule dict "
                          "like {'schedule': 'cosine', 'start': 0.6, 'end': 0.0}.")
    kind = spec.get("schedule")
    if kind not in SCHEDULES:
        raise ConfigError(f"{where}.gamma has schedule {kind!r}; choose one of {SCHEDULES}.")
    extra = set(spec) - {"schedule", "start", "end", "value"}
    if extra:
        raise ConfigError(f"{where}.gamma has unknown key(s) {sorted(extra)}; a schedule takes "
                          "'schedule', 'start', 'end' (or 'value' for constant).")
    for key in (("value",) if kind == "constant" else ("start", "end")):
        if key not in spec:
            raise ConfigError(f"{where}.gamma schedule {kind!r} needs key {key!r}.")
        check_gamma(spec[key], f"{where}.gamma.{key}")


def gamma_at(spec, step: int, num_steps: int) -> float:
    """γ at sampling step ``step`` of ``num_steps`` (step 0 is the first, at t = 0).

    cosine: start + (end − start)·(1 − cos(π s))/2 with s = step/(num_steps − 1), so it is
    exactly ``start`` at the first step and ``end`` at the last (a cosine decay when end < start).
    """
    if not isinstance(spec, dict):
        return float(spec)
    kind = spec["schedule"]
    if kind == "constant":
        return float(spec["value"])
    s = step / (num_steps - 1) if num_steps > 1 else 0.0
    a, b = float(spec["start"]), float(spec["end"])
    w = s if kind == "linear" else (1 - math.cos(math.pi * s)) / 2
    return a * (1 - w) + b * w  # exact at both ends


def gamma_values(spec, num_steps: int) -> list[float]:
    return [gamma_at(spec, i, num_steps) for i in range(num_steps)]


# ---------------------------------------------------------------------------------------------
# Recipes
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Branch:
    model: str = "main"
    cond: str = "class"
    gamma: object = 0.0  # float or schedule dict

    def gamma_at(self, step: int, num_steps: int) -> float:
        return gamma_at(self.gamma, step, num_steps)


@dataclass(frozen=True)
class Recipe:
    name: str
    omega: float
    strong: Branch
    weak: Branch | None
    note: str = ""  # free text kept with the recipe (e.g. where its setting comes from)
    guided_channels: int | None = None  # None: every latent channel (Eq. 3); 3: DiT/SiT's CFG (combine)

    @property
    def branches(self) -> list[Branch]:
        return [self.strong] if self.weak is None else [self.strong, self.weak]

    @property
    def models(self) -> set[str]:
        return {b.model for b in self.branches}

    @property
    def is_plain_sg(self) -> bool:
        """Both branches the same model and condition: only γ differs (Eq. 6 applies)."""
        return (self.weak is not None and self.strong.model == self.weak.model
                and self.strong.cond == self.weak.cond)

    def check_steps(self, num_steps: int):
        """Eq. 6 for plain SG: 0 ≤ γ_strong < γ_weak < 1 at every sampling step."""
        if not self.is_plain_sg:
            return
        for i in range(num_steps):
            gs, gw = self.strong.gamma_at(i, num_steps), self.weak.gamma_at(i, num_steps)
            if not gs < gw:
                where = f" at step {i} of {num_steps}" if num_steps > 1 else ""
                raise ConfigError(
                    f"recipe {self.name!r}: γ_strong={gs:g} ≥ γ_weak={gw:g}{where}. "
                    "With the same model and condition on both branches the guidance signal is the "
                    "capacity gap, so Eq. 6 needs γ_strong < γ_weak; lower gamma_strong or raise gamma_weak.")

    def to_dict(self) -> dict:
        def b(x):
            return None if x is None else {"model": x.model, "cond": x.cond, "gamma": copy.deepcopy(x.gamma)}
        d = {"name": self.name, "omega": self.omega, "strong": b(self.strong), "weak": b(self.weak)}
        if self.guided_channels is not None:  # only where set: older recipes keep their dict (and digests)
            d["guided_channels"] = self.guided_channels
        return {**d, "note": self.note} if self.note else d


def _branch(d, where: str) -> Branch:
    if not isinstance(d, dict):
        raise ConfigError(f"{where} must be a dict with keys {sorted(BRANCH_KEYS)}, got {d!r}.")
    extra = set(d) - BRANCH_KEYS
    if extra:
        raise ConfigError(f"{where} has unknown key(s) {sorted(extra)}; allowed: {sorted(BRANCH_KEYS)}.")
    cond = d.get("cond", "class")
    if cond is None:  # YAML reads `cond: null` as None: the null condition ∅, as written
        cond = "null"
    if not isinstance(cond, str) or cond not in CONDITIONS:
        raise ConfigError(f"{where}.cond={cond!r} is not a condition; choose one of {', '.join(CONDITIONS)} "
                          "(null, or YAML's bare null, is the null condition ∅ of CFG).")
    model = d.get("model", "main")
    if not isinstance(model, str) or not model:
        raise ConfigError(f"{where}.model={model!r} must name a model, e.g. 'main' or 'aux'.")
    gamma = d.get("gamma", 0.0)
    _check_schedule(gamma, where)
    return Branch(model=model, cond=cond, gamma=gamma)


def parse_recipe(d: dict | Recipe, num_steps: int | None = None) -> Recipe:
    """Validate a recipe dict or Recipe (returned as a new, checked Recipe); with num_steps also check
    Eq. 6 per step."""
    if isinstance(d, Recipe):  # built directly: checked as its dict is (to_dict is lossless)
        d = d.to_dict()
    if not isinstance(d, dict):
        raise ConfigError(f"a recipe is a dict or a preset name, got {d!r}.")
    extra = set(d) - RECIPE_KEYS
    if extra:
        raise ConfigError(f"recipe has unknown key(s) {sorted(extra)}; allowed: {sorted(RECIPE_KEYS)}.")
    if "strong" not in d:
        raise ConfigError("recipe has no 'strong' branch; every recipe needs one.")
    name = str(d.get("name", "custom"))
    try:
        omega = float(d.get("omega", 1.0))
    except (TypeError, ValueError):
        raise ConfigError(f"recipe {name!r}: omega={d.get('omega')!r} is not a number.")
    if not math.isfinite(omega):
        raise ConfigError(f"recipe {name!r}: omega={omega!r} must be a finite number (a guidance scale).")
    strong = _branch(d["strong"], f"recipe {name!r} strong")
    weak = None if d.get("weak") is None else _branch(d["weak"], f"recipe {name!r} weak")
    if weak is None and omega != 1.0:
        raise ConfigError(f"recipe {name!r} has omega={omega:g} but no weak branch; "
                          "an unguided recipe has omega=1 (or add a weak branch).")
    channels = d.get("guided_channels")
    if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int) or channels < 1):
        raise ConfigError(f"recipe {name!r}: guided_channels={channels!r} must be a positive integer (3: guide "
                          "the first 3 latent channels as DiT/SiT's CFG does) or left out (all channels, Eq. 3).")
    r = Recipe(name=name, omega=omega, strong=strong, weak=weak, note=str(d.get("note", "")),
               guided_channels=channels)
    if r.is_plain_sg:
        # Constant γs are checked now; schedules as soon as the number of steps is known.
        consts = [b.gamma for b in r.branches]
        if all(not isinstance(g, dict) for g in consts):
            r.check_steps(1)
    if num_steps is not None:
        r.check_steps(num_steps)
    return r


def _b(model="main", cond="class", gamma=0.0):
    return {"model": model, "cond": cond, "gamma": gamma}


def _cosine(start, end):
    return {"schedule": "cosine", "start": start, "end": end}


# Presets (paper settings noted beside them; ω defaults are the paper's where it states one).
PRESETS = {
    # the conditional prediction alone; gamma > 0 is Fig. 4 (inference-time sparsity without guidance)
    "unguided": lambda gamma=0.0: {"omega": 1.0, "strong": _b(gamma=gamma), "weak": None},
    "cfg": lambda omega=1.5: {"omega": omega, "strong": _b(), "weak": _b(cond="null")},
    "autoguidance": lambda omega=1.5: {"omega": omega, "strong": _b(), "weak": _b(model="aux")},
    "icg": lambda omega=1.5: {"omega": omega, "strong": _b(), "weak": _b(cond="random")},
    "sg": lambda omega=2.5, gamma_strong=0.5, gamma_weak=0.9: {
        "omega": omega, "strong": _b(gamma=gamma_strong), "weak": _b(gamma=gamma_weak)},
    "cfg+sg": lambda omega=2.5, gamma_strong=0.2, gamma_weak=0.7: {  # GenEval setting, App. B.2
        "omega": omega, "strong": _b(gamma=gamma_strong), "weak": _b(cond="null", gamma=gamma_weak)},
    "ag+sg": lambda omega=1.5, gamma_strong=0.0, gamma_weak=0.5: {
        "omega": omega, "strong": _b(gamma=gamma_strong), "weak": _b(model="aux", gamma=gamma_weak)},
    # Table 2 / App. B.1: same checkpoint, γs=0.5, γw=0.9 (ω=2.5 as in Fig. A7).
    "sg_flops": lambda omega=2.5: {"omega": omega, "strong": _b(gamma=0.5), "weak": _b(gamma=0.9)},
    # Table 2-3 / App. B.1: aux = early (50k-iteration) checkpoint of the same run; γ cosine-decays
    # 0.6→0 on the auxiliary branch and rises 0→0.6 on the main branch.
    "sg_fid": lambda omega=2.5: {"omega": omega, "strong": _b(gamma=_cosine(0.0, 0.6)),
                                 "weak": _b(model="aux", gamma=_cosine(0.6, 0.0))},
}
ALIASES = {"none": "unguided", "ag": "autoguidance", "sg_flop": "sg_flops"}


def preset(name: str, **overrides) -> dict:
    """A preset recipe as a plain dict; overrides are the preset's arguments (omega, gamma_strong, ...)."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in PRESETS:
        raise ConfigError(f"unknown guidance recipe {name!r}; presets: {', '.join(PRESETS)}.")
    try:
        d = PRESETS[key](**overrides)
    except TypeError:
        import inspect
        allowed = list(inspect.signature(PRESETS[key]).parameters)
        raise ConfigError(f"recipe {name!r} takes {allowed}, got {sorted(overrides)}.")
    d = {"name": key, **d}
    parse_recipe(d)  # validate early
    return d


def resolve_recipe(spec, num_steps: int | None = None) -> Recipe:
    """A preset name, a dict {'preset': name, ...overrides}, a full recipe dict, or a Recipe."""
    if isinstance(spec, str):
        spec = preset(spec)
    elif isinstance(spec, dict) and "preset" in spec:
        kept = ("name", "note", "guided_channels")  # not arguments of the preset
        over = {k: v for k, v in spec.items() if k not in ("preset", *kept)}
        spec = {**preset(spec["preset"], **over), **{k: spec[k] for k in kept if k in spec}}
    return parse_recipe(spec, num_steps)
