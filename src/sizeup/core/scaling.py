"""Compute-optimal model/data sizes (Chinchilla).

Rule of thumb: D_opt ~ 20 N  (Hoffmann et al. 2022, "Training Compute-Optimal LLMs", Table 3:
  ~20 tokens per parameter at every compute budget shown).
Fitted law (Hoffmann et al. 2022, eq. 10, approach 3):
  L(N, D) = E + A / N^alpha + B / D^beta,  E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28
  Compute-optimal split for C = 6 N D:  N_opt = G (C/6)^a,  D_opt = (C/6) / N_opt,
  a = beta/(alpha+beta),  G = (alpha A / (beta B))^(1/(alpha+beta))
The constants are data (ChinchillaLaw fields) so a different fit can be passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

from sizeup.core.explain import Term

SOURCE = "Hoffmann et al. 2022 (arXiv:2203.15556), Table 3 and eq. 10"


@dataclass(frozen=True)
class ChinchillaLaw:
    E: float = 1.69
    A: float = 406.4
    B: float = 410.7
    alpha: float = 0.34
    beta: float = 0.28
    tokens_per_param: float = 20.0

    def loss(self, n_params: float, n_tokens: float) -> float:
        return self.E + self.A / n_params**self.alpha + self.B / n_tokens**self.beta

    def optimal_split(self, compute_flops: float) -> tuple[float, float]:
        """(N_opt, D_opt) minimising the fitted loss at C = 6 N D."""
        a = self.beta / (self.alpha + self.beta)
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))
        n_opt = g * (compute_flops / 6.0) ** a
        return n_opt, compute_flops / 6.0 / n_opt


@dataclass(frozen=True)
class ComputeOptimal:
    params: float
    tokens: float
    tokens_per_param: float
    rule_tokens: float
    rule_params_for_tokens: float
    compute_flops: float
    law_params: float
    law_tokens: float
    loss_at_plan: float
    loss_at_optimum: float
    verdict: str
    terms: tuple[Term, ...]


def compute_optimal(params: float, tokens: float, law: ChinchillaLaw = ChinchillaLaw()) -> ComputeOptimal:
    """Chinchilla view of a plan with N params and D tokens."""
    c = 6.0 * params * tokens  # Kaplan et al. 2020 / Hoffmann 2022: C ~ 6 N D
    law_n, law_d = law.optimal_split(c)
    ratio = tokens / params
    if ratio < 0.5 * law.tokens_per_param:
        verdict = "under-trained for its size (fewer than ~10 tokens/param): a smaller model on the same tokens would reach a lower loss"
    elif ratio > 5 * law.tokens_per_param:
        verdict = "far past compute-optimal (over-trained): fine when inference cost matters, not for a fixed training budget"
    else:
        verdict = "near compute-optimal"
    terms = (
        Term("chinchilla/tokens_for_model", law.tokens_per_param * params, "tokens", "20 * N", {"N": params}, SOURCE),
        Term("chinchilla/params_for_tokens", tokens / law.tokens_per_param, "params", "D / 20", {"D": tokens}, SOURCE),
        Term("chinchilla/compute", c, "FLOP", "6 * N * D", {"N": params, "D": tokens}, "Kaplan et al. 2020"),
        Term("chinchilla/law_params", law_n, "params", "G * (C/6)^(beta/(alpha+beta))",
             {"C": c, "alpha": law.alpha, "beta": law.beta, "A": law.A, "B": law.B}, SOURCE),
        Term("chinchilla/loss_at_plan", law.loss(params, tokens), "nats/token", "E + A/N^alpha + B/D^beta",
             {"E": law.E, "A": law.A, "B": law.B, "N": params, "D": tokens}, SOURCE),
    )
    return ComputeOptimal(params, tokens, ratio, law.tokens_per_param * params, tokens / law.tokens_per_param, c,
                          law_n, law_d, law.loss(params, tokens), law.loss(law_n, law_d), verdict, terms)
