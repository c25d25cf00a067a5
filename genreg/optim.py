"""First-order optimisers on flat vectors, as pure functions of (gradient, state).

Each returns the step to *add* to the parameters (gradient ascent: the gradient points
uphill) and the new optimiser state, so a strategy can keep the state in its dataclass.
"""

from __future__ import annotations

from torch import Tensor


def adam_step(
    grad: Tensor,
    m: Tensor,
    v: Tensor,
    t: int,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
) -> tuple[Tensor, Tensor, Tensor]:
    """Adam (Kingma & Ba 2015) ascent step for step number t >= 1: (step, m, v)."""
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad * grad
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    return lr * m_hat / (v_hat.sqrt() + eps), m, v


def clipup_step(
    grad: Tensor, velocity: Tensor, lr: float, max_speed: float, momentum: float = 0.9
) -> tuple[Tensor, Tensor]:
    """ClipUp (Toklu et al. 2020): normalised gradient, momentum, speed clip."""
    norm = grad.norm()
    direction = grad / norm if norm > 0 else grad
    velocity = momentum * velocity + lr * direction
    speed = velocity.norm().item()
    if speed > max_speed:
        velocity = velocity * (max_speed / speed)
    return velocity, velocity


def sgd_step(
    grad: Tensor, velocity: Tensor, lr: float, momentum: float = 0.9
) -> tuple[Tensor, Tensor]:
    """Gradient ascent with heavy-ball momentum: (step, velocity)."""
    velocity = momentum * velocity + lr * grad
    return velocity, velocity


def optimizer_step(
    name: str, grad: Tensor, m: Tensor, v: Tensor, t: int, lr: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Dispatch on `strategy.optimizer`: (step, m, v); ClipUp/SGD keep velocity in m."""
    if name == "adam":
        return adam_step(grad, m, v, t, lr)
    if name == "clipup":
        step, m = clipup_step(grad, m, lr, max_speed=2 * lr)
        return step, m, v
    if name == "sgd":
        step, m = sgd_step(grad, m, lr)
        return step, m, v
    raise ValueError(f"strategy.optimizer: unknown optimizer {name!r}")
