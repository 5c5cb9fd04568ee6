"""Divergences between the teacher's and the student's action distributions."""

import torch as th


def gaussian_kl(
    mean_p: th.Tensor, log_std_p: th.Tensor, mean_q: th.Tensor, log_std_q: th.Tensor
) -> th.Tensor:
    """
    Closed-form ``KL(p || q)`` between diagonal Gaussians, summed over action dimensions.

    ``KL = Σ_i log(σ_q/σ_p) + (σ_p² + (μ_p - μ_q)²) / (2 σ_q²) - 1/2``

    :return: one value per batch row
    """
    var_p = th.exp(2.0 * log_std_p)
    var_q = th.exp(2.0 * log_std_q)
    kl = log_std_q - log_std_p + (var_p + (mean_p - mean_q) ** 2) / (2.0 * var_q) - 0.5
    return kl.sum(dim=-1)


def teacher_student_divergence(
    teacher_mean: th.Tensor,
    teacher_log_std: th.Tensor,
    student_mean: th.Tensor,
    student_log_std: th.Tensor,
    *,
    direction: str = "forward",
    hard_targets: bool = False,
) -> th.Tensor:
    """
    Per-sample distillation loss between the teacher and the student.

    :param direction: ``"forward"`` for ``KL(teacher || student)`` (mode covering, the default
        of policy distillation), ``"reverse"`` for ``KL(student || teacher)``
    :param hard_targets: use the squared error between the student's mean action and the
        teacher's deterministic action instead of a KL (behaviour cloning)
    :return: one value per batch row
    """
    if hard_targets:
        return ((student_mean - teacher_mean) ** 2).sum(dim=-1)
    if direction == "forward":
        return gaussian_kl(teacher_mean, teacher_log_std, student_mean, student_log_std)
    if direction == "reverse":
        return gaussian_kl(student_mean, student_log_std, teacher_mean, teacher_log_std)
    raise ValueError(f"KL direction must be 'forward' or 'reverse', got {direction!r}")
