"""The exact velocity of an isotropic Gaussian mixture in numpy (float64), in
libfmd's convention x_t = (1 - t) x0 + t eps, v = E[eps - x0 | x_t]:
given component k, x_t ~ N((1 - t) mu_k, s2_k I) with s2_k = (1 - t)^2 std_k^2 + t^2,
E[x0 | x_t, k] = mu_k + (1 - t) std_k^2 / s2_k (x_t - (1 - t) mu_k) and
E[eps | x_t, k] = t / s2_k (x_t - (1 - t) mu_k); v is their posterior mix."""
import numpy as np


class MixtureVelocity:
    def __init__(self, weights, means, stds, classes=None):
        self.w = np.asarray(weights, np.float64)
        self.mu = np.asarray(means, np.float64)
        self.std = np.asarray(stds, np.float64)
        self.classes = None if classes is None else np.asarray(classes)
        self.num_classes = 0 if classes is None else int(self.classes.max()) + 1
        self.calls = 0

    def cond(self, x, t, allowed):
        # x (B, d), t (B,), allowed (B, K) bool
        d = x.shape[1]
        a = (1.0 - t)[:, None]                                     # (B, 1)
        s2 = a ** 2 * self.std[None, :] ** 2 + (t ** 2)[:, None]    # (B, K)
        r = x[:, None, :] - a[:, :, None] * self.mu[None, :, :]     # (B, K, d)
        logp = (np.log(np.maximum(self.w, 1e-300))[None, :] - 0.5 * d * np.log(s2)
                - 0.5 * (r ** 2).sum(-1) / s2)
        logp = np.where(allowed, logp, -np.inf)
        logp -= logp.max(1, keepdims=True)
        p = np.exp(logp)
        p /= p.sum(1, keepdims=True)                                # (B, K)
        e_eps = t[:, None, None] / s2[:, :, None] * r
        e_x0 = self.mu[None] + (a[:, :, None] * self.std[None, :, None] ** 2 / s2[:, :, None]) * r
        return (p[:, :, None] * (e_eps - e_x0)).sum(1)

    def __call__(self, x, t, labels=None):
        self.calls += 1
        x = np.asarray(x, np.float64).reshape(len(t), -1)
        t = np.asarray(t, np.float64)
        K = len(self.w)
        if self.classes is None or labels is None:
            allowed = np.ones((len(t), K), bool)
        else:
            lab = np.asarray(labels)
            allowed = (self.classes[None, :] == lab[:, None]) | (lab[:, None] == self.num_classes)
        return self.cond(x, t, allowed).astype(np.float32)


def random_mixture(rng, k=4, d=2, classes=False):
    w = rng.uniform(0.5, 1.5, k)
    mu = rng.normal(0, 2, (k, d))
    std = rng.uniform(0.2, 0.6, k)
    c = (np.arange(k) % 2).astype(np.int32) if classes else None
    return w, mu, std, c
