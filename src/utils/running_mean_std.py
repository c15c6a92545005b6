"""Running mean and variance of a stream of batches, used to standardise rewards and returns
(shipped with the SALE-MB plugin: imports torch only)."""
import torch


class RunningMeanStd:
    """Mean and (population) variance of every value seen so far, per element of ``shape``.

    Each ``update(x)`` treats all leading dimensions of ``x`` beyond ``shape`` as samples and
    merges the batch statistics with the running ones by Chan et al.'s parallel algorithm.
    ``count`` starts at ``epsilon`` (with mean 0 and variance 1) so early divisions are safe.
    """

    def __init__(self, epsilon=1e-4, shape=(), device="cpu"):
        self.shape = tuple(shape)
        self.mean = torch.zeros(self.shape, dtype=torch.float32, device=device)
        self.var = torch.ones(self.shape, dtype=torch.float32, device=device)
        self.count = epsilon

    def update(self, x):
        x = torch.as_tensor(x, dtype=torch.float32, device=self.mean.device)
        samples = x.reshape(-1, *self.shape)
        batch_count = samples.shape[0]
        if batch_count == 0:
            return
        batch_mean = samples.mean(dim=0)
        batch_var = samples.var(dim=0, unbiased=False)

        total = self.count + batch_count
        delta = batch_mean - self.mean
        m2 = (self.var * self.count + batch_var * batch_count
              + delta.pow(2) * self.count * batch_count / total)
        self.mean = self.mean + delta * batch_count / total
        self.var = m2 / total
        self.count = total

    def standardise(self, x, mask):
        """Update with the entries of x [B, T, *shape] where mask [B, T, 1] is 1 (EPyMARL also
        counts padding), then return x standardised by the running statistics."""
        self.update(x[mask.squeeze(-1) > 0])
        return (x - self.mean) / torch.sqrt(self.var)

    def to(self, device):
        self.mean, self.var = self.mean.to(device), self.var.to(device)
        return self

    def state_dict(self):
        return {"mean": self.mean.clone(), "var": self.var.clone(), "count": self.count}

    def load_state_dict(self, state):
        device = self.mean.device
        self.mean = state["mean"].to(device=device, dtype=torch.float32).clone()
        self.var = state["var"].to(device=device, dtype=torch.float32).clone()
        self.count = float(state["count"])
