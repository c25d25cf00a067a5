"""GENREG's trust-based genetic algorithm, as published and engineered for scale.

Each genome's trust decays and accumulates its generation score; the top fraction by
trust are the parents; children are copies of one parent or crossovers of two, then
mutated, and inherit their parents' trust (docs/algorithm.md). The published constants
are the defaults; the knobs below reach beyond them:

- parent selection in the top fraction: by trust (published), uniform (truncation) or
  linear rank;
- crossover: none (post), uniform per weight (author's code) or per hidden unit (a
  unit's incoming weights, bias and outgoing weights from one parent), for a share of
  the children, optionally also mutated;
- mutation: sparse (post: each weight with probability p gets N(0, sigma)), dense (every
  weight) or low rank (the first layer gets sigma A B^T / sqrt(r), the rest dense);
  sigma per genome, self-adaptive (log-normal, inherited) when `self_adapt_tau` > 0;
- elites carried over unchanged and re-scored on the next batch.

Only the parent pool (the top of the last evaluated population) is kept between
generations. With unit crossover (or none) and low-rank mutation, children are never
materialised: a child's first-layer pre-activations are its parents' cached columns
plus (x A) B^T, so one generation costs a GEMM over the pool, not over the population.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from genreg.config import TrustGAConfig
from genreg.metric_names import (
    MUTATION_SCALE,
    TRUST_MAX,
    TRUST_MEAN,
    TRUST_MEDIAN,
    TRUST_STD,
    fitness_metrics,
)
from genreg.model import BatchedMLP, sigmoid_readout
from genreg.strategies.base import Population, StrategyBase

Selection = Literal["trust", "uniform", "rank"]


@dataclass
class TrustGAState:
    # [K, D] the parent pool (the whole initial population before generation 0); between
    # ask and tell, the children being evaluated (possibly structured)
    genomes: Population
    trust: Tensor  # [K]
    sigma: Tensor  # [K] each genome's mutation scale
    generation: int = 0  # generations told so far


def update_trust(trust: Tensor, score: Tensor, keep: float, clamp: float) -> Tensor:
    """trust * keep + score, clamped to [-clamp, clamp]: [P]."""
    return (trust * keep + score).clamp_(-clamp, clamp)


def select_parents(
    trust: Tensor,
    num_parents: int,
    num_children: int,
    kind: Selection,
    rng: torch.Generator,
) -> Tensor:
    """Indices [num_children] of parents drawn from the `num_parents` most trusted.

    kind: "trust" draws in proportion to trust above the weakest parent's (published),
    "uniform" draws uniformly (truncation selection), "rank" in proportion to
    num_parents - rank.
    """
    num_parents = min(max(1, num_parents), len(trust))
    top = torch.topk(trust, num_parents).indices  # sorted, most trusted first
    if kind == "uniform":
        weights = torch.ones(num_parents, device=trust.device)
    elif kind == "rank":
        weights = torch.arange(num_parents, 0, -1, device=trust.device).float()
    else:
        # trust goes negative at chance level (10 * 0.1 - 1.5 * 0.9 < 0), so weigh by
        # trust above the weakest parent's; equal trust means equal chances
        weights = trust[top] - trust[top].min()
        if not torch.isfinite(weights).all() or weights.sum() <= 0:
            weights = torch.ones(num_parents, device=trust.device)
    draws = torch.multinomial(weights, num_children, replacement=True, generator=rng)
    return top[draws]


def random_bits(shape: tuple[int, int], rng: torch.Generator) -> Tensor:
    """Fair coin flips [N, D] (bool): eight per random byte, not one float each."""
    rows, cols = shape
    nbytes = (cols + 7) // 8
    packed = torch.randint(
        0, 256, (rows, nbytes), generator=rng, device=rng.device, dtype=torch.uint8
    )
    shifts = torch.arange(8, device=rng.device, dtype=torch.uint8)
    bits = (packed.unsqueeze(-1) >> shifts) & 1
    return bits.view(rows, nbytes * 8)[:, :cols].bool()


def crossover(mothers: Tensor, fathers: Tensor, rng: torch.Generator) -> Tensor:
    """Uniform crossover: each weight from either parent with probability 1/2 [N, D]."""
    return torch.where(random_bits(tuple(mothers.shape), rng), fathers, mothers)


def mutate_(
    genomes: Tensor, prob: float, scale: float | Tensor, rng: torch.Generator
) -> Tensor:
    """Add N(0, scale) to each weight of `genomes` [N, D] with probability `prob`.

    In place. `scale` is one number or one per genome [N].

    Only the positions that mutate are drawn: Poisson(-N*D*ln(1-prob)) uniform hits, so
    each weight is hit at least once with probability exactly `prob`; a hit weight gets
    one normal draw. This costs O(prob * N * D) instead of two draws per weight.
    """
    per_genome = isinstance(scale, Tensor)
    if prob <= 0 or genomes.numel() == 0 or (not per_genome and scale <= 0):
        return genomes
    flat = genomes.view(-1)
    if prob >= 1:
        noise = torch.randn(genomes.shape, generator=rng, device=flat.device)
        genomes += noise * (scale.unsqueeze(1) if per_genome else scale)
        return genomes
    rate = torch.tensor([-flat.numel() * math.log1p(-prob)], dtype=torch.float64)
    hits = int(torch.poisson(rate.to(rng.device), generator=rng).item())
    positions = torch.randint(
        0, flat.numel(), (hits,), generator=rng, device=flat.device
    )
    positions = torch.unique(positions)
    noise = torch.randn(positions.shape, generator=rng, device=flat.device)
    noise *= scale[positions // genomes.shape[-1]] if per_genome else scale
    flat.index_add_(0, positions, noise)
    return genomes


@dataclass(frozen=True)
class UnitChildren:
    """Children assembled unit by unit from a dense parent pool, plus low-rank noise.

    Hidden unit j of child n (its W1 column) comes from pool genome fathers[n] where
    from_father[n, j], else from mothers[n]; rest [N, H + H*C + C] holds every child's
    own b1, W2 and b2. The first-layer mutation of child n is a_n b[n]^T, with a_n the
    columns n*r..(n+1)*r of a [I, N*r] and b [N, H, r] already scaled by the child's
    sigma / sqrt(r) (None: no first-layer mutation).
    """

    model: BatchedMLP
    pool: Tensor  # [K, D]
    mothers: Tensor  # [N] pool indices
    fathers: Tensor  # [N]
    from_father: Tensor  # [N, H] bool
    rest: Tensor  # [N, H + H*C + C]
    a: Tensor | None
    b: Tensor | None

    def __len__(self) -> int:
        return len(self.mothers)

    def forward(self, x: Tensor) -> Tensor:
        """Logits [N, B, C] on shared images x [B, I]: one GEMM over the pool."""
        n, h = self.from_father.shape
        w1 = self.model.layers(self.pool)[0]  # [K, I, H]
        pool_pre = torch.bmm(x.expand(len(w1), *x.shape), w1)  # [K, B, H]
        pool_pre = pool_pre.transpose(1, 2).reshape(-1, len(x))  # [K*H, B]
        src = torch.where(
            self.from_father, self.fathers.unsqueeze(1), self.mothers.unsqueeze(1)
        )
        rows = (src * h + torch.arange(h, device=x.device)).view(-1)
        pre = pool_pre.index_select(0, rows).view(n, h, len(x))
        if self.a is not None:
            r = self.a.shape[1] // n
            xa = (x @ self.a).T.reshape(n, r, len(x))  # [N, r, B]
            if r == 1:
                pre.addcmul_(self.b, xa)
            else:
                pre.baddbmm_(self.b, xa)
        b1, w2, b2 = self.model.rest_layers(self.rest)
        units = pre.add_(b1.unsqueeze(-1)).mul_(2).sigmoid_()  # [N, H, B]
        readout, bias = sigmoid_readout(w2, b2)
        return torch.baddbmm(bias, readout, units).transpose(1, 2).contiguous()

    def dense(self, rows: Tensor | None = None) -> Tensor:
        """Children `rows` (all by default) as flat genomes [n, D]."""
        n_all = len(self)
        rows = torch.arange(n_all, device=self.pool.device) if rows is None else rows
        i, h = self.model.num_inputs, self.model.hidden
        out = self.pool[self.mothers[rows]]  # [n, D], the mothers' W1 columns
        out[:, i * h :] = self.rest[rows]
        w1 = self.model.layers(out)[0]  # [n, I, H] view of out
        from_father = self.from_father[rows]
        crossed = from_father.any(1).nonzero().flatten()
        if len(crossed):
            fathers_w1 = self.model.layers(self.pool[self.fathers[rows[crossed]]])[0]
            w1[crossed] = torch.where(
                from_father[crossed].unsqueeze(1), fathers_w1, w1[crossed]
            )
        if self.a is not None:
            r = self.a.shape[1] // n_all
            a = self.a.view(i, n_all, r)[:, rows].permute(1, 0, 2)  # [n, I, r]
            w1.baddbmm_(a, self.b[rows].transpose(1, 2))
        return out


@dataclass(frozen=True)
class _Plan:
    """Who the children are: elites first, then children of the pool."""

    mothers: Tensor  # [N] pool indices
    fathers: Tensor  # [N] (== mothers where not crossed)
    crossed: Tensor  # [N] bool
    mutated: Tensor  # [N] bool
    trust: Tensor  # [N] inherited trust
    sigma: Tensor  # [N] mutation scale


class TrustGA(StrategyBase):
    """GENREG's trust GA; every constant comes from `TrustGAConfig`."""

    config: TrustGAConfig
    config_class: ClassVar[type] = TrustGAConfig
    state_class: ClassVar[type] = TrustGAState

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        self.structured = cfg.crossover != "uniform" and cfg.mutation == "lowrank"
        if (cfg.crossover == "unit" or cfg.mutation == "lowrank") and (
            self.model is None or self.model.num_params != self.num_params
        ):
            raise ValueError(
                "strategy.crossover: unit and strategy.mutation: lowrank need the "
                "BatchedMLP whose genomes are evolved (one-hidden-layer classifiers)"
            )
        pop = cfg.population_size
        self.num_parents = max(1, math.ceil(cfg.top_fraction * pop))
        self.pool_size = max(self.num_parents, cfg.elitism)

    def init(self, genomes: Tensor, rng: torch.Generator) -> TrustGAState:
        trust = torch.zeros(len(genomes), device=genomes.device)
        sigma = torch.full_like(trust, self.config.mutation_scale)
        return TrustGAState(genomes=genomes, trust=trust, sigma=sigma)

    def ask(
        self, state: TrustGAState, rng: torch.Generator
    ) -> tuple[Population, TrustGAState]:
        if state.generation == 0:
            return state.genomes, state
        plan = self._plan(state, rng)
        if self.config.crossover == "unit" or self.structured:
            units = self._unit_children(state.genomes, plan, rng)
            children = units if self.structured else units.dense()
        else:
            children = self._copied_children(state.genomes, plan, rng)
        if not self.structured:
            self._mutate_dense_(children, plan, rng)
        state = TrustGAState(children, plan.trust, plan.sigma, state.generation)
        return children, state

    def tell(
        self, state: TrustGAState, genomes: Population, fitness: Tensor
    ) -> tuple[TrustGAState, dict[str, float]]:
        cfg = self.config
        keep = 1.0 - cfg.trust_decay
        if cfg.decay_mode == "image":  # the per-image rewards already carry their decay
            keep = keep**self.images_per_generation
        trust = update_trust(state.trust, fitness, keep, cfg.trust_clamp)
        metrics = {
            TRUST_MAX: trust.max().item(),
            TRUST_MEAN: trust.mean().item(),
            TRUST_MEDIAN: trust.median().item(),
            TRUST_STD: trust.std().item() if len(trust) > 1 else 0.0,
            **fitness_metrics(fitness),
            MUTATION_SCALE: state.sigma.mean().item(),
        }
        keep_rows = torch.topk(trust, min(self.pool_size, len(trust))).indices
        if isinstance(genomes, UnitChildren):
            pool = genomes.dense(keep_rows)
        else:
            pool = genomes[keep_rows]
        new = TrustGAState(
            pool, trust[keep_rows], state.sigma[keep_rows], state.generation + 1
        )
        return new, metrics

    def best(self, state: TrustGAState) -> Tensor:
        return state.genomes[state.trust.argmax()]

    def _plan(self, state: TrustGAState, rng: torch.Generator) -> _Plan:
        cfg = self.config
        trust, sigma = state.trust, state.sigma
        device = trust.device
        num_children = cfg.population_size - cfg.elitism
        elites = torch.topk(trust, cfg.elitism).indices
        mothers = select_parents(
            trust, self.num_parents, num_children, cfg.parent_selection, rng
        )
        fathers = mothers
        crossed = torch.zeros(num_children, dtype=torch.bool, device=device)
        child_trust = trust[mothers]
        child_sigma = sigma[mothers]
        if cfg.crossover != "none":
            fathers = select_parents(
                trust, self.num_parents, num_children, cfg.parent_selection, rng
            )
            crossed = torch.rand(num_children, generator=rng, device=rng.device) < (
                cfg.crossover_fraction
            )
            fathers = torch.where(crossed, fathers, mothers)
            child_trust = (child_trust + trust[fathers]) / 2
            child_sigma = (child_sigma * sigma[fathers]).sqrt()
        if cfg.child_trust == "factor":
            child_trust = child_trust * cfg.child_trust_factor
        if cfg.self_adapt_tau > 0:
            noise = torch.randn(num_children, generator=rng, device=rng.device)
            child_sigma = child_sigma * torch.exp(cfg.self_adapt_tau * noise)
        mutated = ~crossed | cfg.mutate_crossovers
        keep_elites = torch.full_like(elites, cfg.mutate_survivors, dtype=torch.bool)
        no = torch.zeros_like(keep_elites)
        return _Plan(
            mothers=torch.cat([elites, mothers]),
            fathers=torch.cat([elites, fathers]),
            crossed=torch.cat([no, crossed]),
            mutated=torch.cat([keep_elites, mutated]),
            trust=torch.cat([trust[elites], child_trust]),
            sigma=torch.cat([sigma[elites], child_sigma]),
        )

    def _copied_children(
        self, pool: Tensor, plan: _Plan, rng: torch.Generator
    ) -> Tensor:
        """Copies of the mothers; crossed children uniformly mixed with the fathers."""
        children = pool[plan.mothers]
        rows = plan.crossed.nonzero().flatten()
        if len(rows):
            children[rows] = crossover(children[rows], pool[plan.fathers[rows]], rng)
        return children

    def _unit_children(
        self, pool: Tensor, plan: _Plan, rng: torch.Generator
    ) -> UnitChildren:
        model = self.model
        assert model is not None  # checked in __init__
        n, h, c = len(plan.mothers), model.hidden, model.num_outputs
        from_father = torch.zeros(n, h, dtype=torch.bool, device=pool.device)
        if self.config.crossover == "unit":
            from_father = random_bits((n, h), rng) & plan.crossed.unsqueeze(1)
        src = torch.where(
            from_father, plan.fathers.unsqueeze(1), plan.mothers.unsqueeze(1)
        )
        _, b1, w2, b2 = model.layers(pool)
        units = torch.arange(h, device=pool.device)
        rest = torch.cat(
            [b1[src, units], w2[src, units].reshape(n, h * c), b2[plan.mothers]], dim=1
        )
        a = b = None
        if self.structured:
            r, i = self.config.noise_rank, model.num_inputs
            scale = plan.sigma * plan.mutated
            a = torch.randn(i, n * r, generator=rng, device=rng.device)
            b = torch.randn(n, h, r, generator=rng, device=rng.device)
            b *= (scale / math.sqrt(r)).view(n, 1, 1)
            rest += torch.randn(rest.shape, generator=rng, device=rng.device) * (
                scale.unsqueeze(1)
            )
        return UnitChildren(
            model, pool, plan.mothers, plan.fathers, from_father, rest, a, b
        )

    def _mutate_dense_(
        self, children: Tensor, plan: _Plan, rng: torch.Generator
    ) -> None:
        cfg = self.config
        rows = plan.mutated.nonzero().flatten()
        if not len(rows):
            return
        everyone = len(rows) == len(children)
        block = children if everyone else children[rows]
        sigma = plan.sigma[rows]
        if cfg.mutation == "sparse":
            # a constant scale stays a Python number: the published path unchanged
            scale = sigma if cfg.self_adapt_tau > 0 else cfg.mutation_scale
            mutate_(block, cfg.mutation_prob, scale, rng)
        else:
            if cfg.mutation == "lowrank":
                noise = self._lowrank_noise(len(block), rng)
            else:
                noise = torch.randn(block.shape, generator=rng, device=rng.device)
            block.add_(noise * sigma.unsqueeze(1))
        if not everyone:
            children[rows] = block

    def _lowrank_noise(self, n: int, rng: torch.Generator) -> Tensor:
        """Unit-scale noise [n, D]: a b^T / sqrt(r) on W1, dense on the rest."""
        model = self.model
        assert model is not None
        i, h, r = model.num_inputs, model.hidden, self.config.noise_rank
        a = torch.randn(n, i, r, generator=rng, device=rng.device)
        b = torch.randn(n, h, r, generator=rng, device=rng.device)
        w1 = torch.bmm(a, b.transpose(1, 2)).reshape(n, i * h) / math.sqrt(r)
        rest = torch.randn(n, self.num_params - i * h, generator=rng, device=rng.device)
        return torch.cat([w1, rest], dim=1)
