"""PyTorch reference for byol.c: the same networks (torchvision's structure and names), the same
BYOL step (view order, loss, LARS, EMA), a minimal safetensors reader/writer, and helpers to
build a random state. Used to make the committed fixtures (make_fixtures.py) and to check any
configuration against ./byol (compare_step.py). Needs Debian's python3-torch (and numpy); never
needed to build or test byol.c."""
import copy
import json
import math
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------- networks (torchvision names)

class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + idt)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # stride here: v1.5
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = None
        if stride != 1 or cin != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes * 4, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        return F.relu(self.bn3(self.conv3(y)) + idt)


LAYOUT = {"resnet18": (BasicBlock, [2, 2, 2, 2]), "resnet34": (BasicBlock, [3, 4, 6, 3]),
          "resnet50": (Bottleneck, [3, 4, 6, 3])}


class ResNet(nn.Module):
    def __init__(self, arch="resnet18", width=64, stem="cifar", in_channels=3):
        super().__init__()
        block, depths = LAYOUT[arch]
        self.stem = stem
        if stem == "cifar":
            self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        cin = width
        for i, n in enumerate(depths):
            planes, blocks = width * 2 ** i, []
            for j in range(n):
                blocks.append(block(cin, planes, 2 if (j == 0 and i > 0) else 1))
                cin = planes * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.dim = cin

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        if self.stem != "cifar":
            x = F.max_pool2d(x, 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=(2, 3))


def mlp(cin, hidden, cout, layers=2, bn_last=False):
    """Linear-BN-ReLU, ..., Linear[-BN]: BYOL's heads (2 layers), SimSiam's projector (3 layers,
    a BN after the last) and predictor."""
    mods = []
    for i in range(layers):
        last = i == layers - 1
        mods.append(nn.Linear(cin if i == 0 else hidden, cout if last else hidden))
        if not last or bn_last:
            mods.append(nn.BatchNorm1d(cout if last else hidden))
        if not last:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


class WeightNormLinear(nn.Module):
    """DINO's last layer: nn.utils.weight_norm(nn.Linear(cin, cout, bias=False)) with weight_g
    filled with 1 and frozen (norm_last_layer=True), i.e. weight = v / |v| row by row. Written
    out so that the state holds weight_v alone; make_fixtures.py checks it against
    nn.utils.weight_norm."""

    def __init__(self, cin, cout):
        super().__init__()
        self.weight_v = nn.Parameter(torch.empty(cout, cin))
        nn.init.kaiming_uniform_(self.weight_v, a=math.sqrt(5))

    def forward(self, x):
        return F.linear(x, self.weight_v / self.weight_v.norm(dim=1, keepdim=True))


class DinoHead(nn.Module):
    """DINO's DINOHead: Linear-GELU-Linear-GELU-Linear to the bottleneck (with use_bn, a
    BatchNorm1d before each GELU), l2-normalized, then the weight-normalized last layer to K
    outputs."""

    def __init__(self, cin, hidden, bottleneck, out, layers=3, use_bn=False):
        super().__init__()
        mods = []
        for i in range(layers):
            last = i == layers - 1
            mods.append(nn.Linear(cin if i == 0 else hidden, bottleneck if last else hidden))
            if not last:
                if use_bn:
                    mods.append(nn.BatchNorm1d(hidden))
                mods.append(nn.GELU())
        self.mlp = nn.Sequential(*mods)
        self.last_layer = WeightNormLinear(bottleneck, out)

    def forward(self, x):
        return self.last_layer(F.normalize(self.mlp(x), dim=-1, p=2))


class Online(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        method = cfg.get("method", "byol")
        simsiam = method == "simsiam"
        self.encoder = ResNet(cfg["arch"], cfg["width"], cfg["stem"], cfg["in_channels"])
        if method == "dino":
            self.projector = DinoHead(self.encoder.dim, cfg["proj_hidden"], cfg["proj_dim"], cfg["dino_out"],
                                      cfg.get("proj_layers", 3), use_bn=bool(cfg.get("head_bn", 0)))
        else:
            self.projector = mlp(self.encoder.dim, cfg["proj_hidden"], cfg["proj_dim"],
                                 cfg.get("proj_layers", 3 if simsiam else 2), bn_last=simsiam)

    def forward(self, x):
        return self.projector(self.encoder(x))


class Byol(nn.Module):
    """Keys: online.encoder.*, online.projector.*, predictor.*, target.encoder.*, target.projector.*"""

    def __init__(self, cfg):
        super().__init__()
        self.online = Online(cfg)
        self.predictor = mlp(cfg["proj_dim"], cfg["pred_hidden"], cfg["proj_dim"])
        # --local-predictor 1: multi-crop's local views predict with a predictor of their own
        self.local_predictor = mlp(cfg["proj_dim"], cfg["pred_hidden"], cfg["proj_dim"]) \
            if cfg.get("local_predictor") else None
        self.target = copy.deepcopy(self.online)
        for p in self.target.parameters():
            p.requires_grad_(False)

    def trained_parameters(self):
        own = [] if self.local_predictor is None else \
            [(f"local_predictor.{k}", p) for k, p in self.local_predictor.named_parameters()]
        return [(f"online.{k}", p) for k, p in self.online.named_parameters()] + \
               [(f"predictor.{k}", p) for k, p in self.predictor.named_parameters()] + own


class SimSiam(nn.Module):
    """Keys: online.encoder.*, online.projector.*, predictor.* (no target: the online network
    behind a stop-gradient)."""

    def __init__(self, cfg):
        super().__init__()
        self.online = Online(cfg)
        self.predictor = mlp(cfg["proj_dim"], cfg["pred_hidden"], cfg["proj_dim"])

    def trained_parameters(self):
        return [(f"online.{k}", p) for k, p in self.online.named_parameters()] + \
               [(f"predictor.{k}", p) for k, p in self.predictor.named_parameters()]


class CenterHolder(nn.Module):
    def __init__(self, k):
        super().__init__()
        self.register_buffer("center", torch.zeros(k))


class Dino(nn.Module):
    """Keys: online.encoder.*, online.projector.{mlp,last_layer}.*, target.* (the teacher, an
    EMA of the student) and dino.center (DINOLoss's center, [K])."""

    def __init__(self, cfg):
        super().__init__()
        self.online = Online(cfg)
        self.target = copy.deepcopy(self.online)
        for p in self.target.parameters():
            p.requires_grad_(False)
        self.dino = CenterHolder(cfg["dino_out"])

    def trained_parameters(self):
        return [(f"online.{k}", p) for k, p in self.online.named_parameters()]


def make_model(cfg):
    method = cfg.get("method", "byol")
    return SimSiam(cfg) if method == "simsiam" else Dino(cfg) if method == "dino" else Byol(cfg)


DEFAULT_CFG = dict(arch="resnet18", width=64, stem="cifar", in_channels=3, proj_hidden=4096,
                   proj_dim=256, pred_hidden=4096)


def model_flags(cfg):
    """The ./byol flags for a config."""
    return ["--arch", cfg["arch"], "--width", str(cfg["width"]), "--stem", cfg["stem"],
            "--in-channels", str(cfg["in_channels"]), "--proj-hidden", str(cfg["proj_hidden"]),
            "--proj-dim", str(cfg["proj_dim"]), "--pred-hidden", str(cfg["pred_hidden"])]


# ---------------------------------------------------------------- test programs' checks

class Checks:
    """The C tests' conventions for a Python test program: "ok"/"FAIL" lines, then
    "RESULT <p> passed <f> failed" (tests/run.sh reads it)."""

    def __init__(self):
        self.passed = self.failed = 0

    def __call__(self, cond, what):
        print(("ok   " if cond else "FAIL ") + what)
        self.passed, self.failed = self.passed + bool(cond), self.failed + (not cond)

    def finish(self):
        print(f"RESULT {self.passed} passed {self.failed} failed")
        return 1 if self.failed else 0


# ---------------------------------------------------------------- the BYOL step

def regression_loss(p, z):
    return (2 - 2 * (F.normalize(p, dim=1) * F.normalize(z, dim=1)).sum(dim=1)).mean()


def vicreg_var_cov(z):
    """VICReg's variance hinge and covariance penalty of a batch z [B, D] (Bardes et al. 2022,
    as their code computes them): mean relu(1 - sqrt(var + 1e-4)) with the unbiased variance,
    and the squared off-diagonal covariances summed and divided by D."""
    zc = z - z.mean(dim=0)
    std = torch.sqrt(zc.var(dim=0) + 0.0001)
    cov = (zc.T @ zc) / (z.shape[0] - 1)
    off = cov - torch.diag(torch.diag(cov))
    return torch.mean(F.relu(1 - std)), off.pow(2).sum() / z.shape[1]


@torch.no_grad()
def lars_(params, grads, momentum, lr, wd, m, eta):
    for name, p in params:
        g = grads[name]
        if p.ndim > 1:
            u = g + wd * p
            pn, un = torch.linalg.vector_norm(p), torch.linalg.vector_norm(u)
            if pn > 0 and un > 0:
                u = u * (eta * pn / un)
        else:
            u = g
        v = momentum[name]
        v.mul_(m).add_(u)
        p.sub_(lr * v)


@torch.no_grad()
def sgd_(params, grads, momentum, lr, pred_lr, wd, m):
    """PyTorch's SGD (momentum, weight decay on every tensor); the predictor at pred_lr."""
    for name, p in params:
        u = grads[name] + wd * p
        v = momentum[name]
        v.mul_(m).add_(u)
        p.sub_((pred_lr if name.startswith("predictor.") else lr) * v)


def simsiam_step(model, v1, v2, momentum, lr, pred_lr, wd, m, stop_grad=True):
    """SimSiam: z = f(x), p = h(z), loss = -(cos(p1, z2) + cos(p2, z1)) / 2 with z detached
    (stop_grad False: not detached, the ablation that collapses)."""
    model.train()
    params = model.trained_parameters()
    z1, z2 = model.online(v1), model.online(v2)
    p1, p2 = model.predictor(z1), model.predictor(z2)

    def d(p, z):
        return -(F.normalize(p, dim=1) * F.normalize(z.detach() if stop_grad else z, dim=1)).sum(dim=1).mean()

    loss = 0.5 * (d(p1, z2) + d(p2, z1))
    grads = torch.autograd.grad(loss, [p for _, p in params])
    sgd_(params, dict(zip([k for k, _ in params], grads)), momentum, lr, pred_lr, wd, m)
    return loss.item()


def dino_step(model, v1, v2, momentum, lr, wd, m, tau, teacher_temp, student_temp, center_momentum, center,
              locals_=()):
    """DINO with two global views, as DINOLoss computes it: the teacher's softmax((t - c) / tt)
    against the student's log_softmax(s / ts) of the other view, averaged over the two pairs;
    SGD; then the center (if centering) and the teacher's EMA."""
    model.train()
    params = model.trained_parameters()
    s1, s2 = model.online(v1), model.online(v2)
    with torch.no_grad():
        t1, t2 = model.target(v1), model.target(v2)
    c = model.dino.center
    q1, q2 = F.softmax((t1 - c) / teacher_temp, dim=-1), F.softmax((t2 - c) / teacher_temp, dim=-1)

    def h(q, s):
        return torch.sum(-q * F.log_softmax(s / student_temp, dim=-1), dim=-1).mean()

    loss = h(q1, s2) + h(q2, s1)
    for x in locals_:  # multi-crop: each local view against both teacher views
        sl = model.online(x)
        loss = loss + h(q1, sl) + h(q2, sl)
    loss = loss / (2 + 2 * len(locals_))
    grads = torch.autograd.grad(loss, [p for _, p in params])
    sgd_(params, dict(zip([k for k, _ in params], grads)), momentum, lr, lr, wd, m)
    with torch.no_grad():
        if center:
            c.mul_(center_momentum).add_((1 - center_momentum) * torch.cat([t1, t2]).mean(dim=0))
        for t, o in zip(model.target.parameters(), model.online.parameters()):
            t.mul_(tau).add_((1 - tau) * o)
    return loss.item()


@torch.no_grad()
def adamw_(params, grads, exp_avg, exp_avg_sq, lr, wd, step, beta1=0.9, beta2=0.999, eps=1e-8):
    """torch.optim.AdamW's update at step `step` (1 for the first), the weight decay on tensors of
    more than one dimension only (DINO's parameter groups); make_fixtures.py checks it against
    torch.optim.AdamW."""
    bc1, bc2 = 1 - beta1 ** step, 1 - beta2 ** step
    for name, p in params:
        g = grads[name]
        p.mul_(1 - lr * (wd if p.ndim > 1 else 0.0))
        exp_avg[name].lerp_(g, 1 - beta1)
        exp_avg_sq[name].mul_(beta2).addcmul_(g, g, value=1 - beta2)
        denom = (exp_avg_sq[name].sqrt() / math.sqrt(bc2)).add_(eps)
        p.addcdiv_(exp_avg[name], denom, value=-lr / bc1)


def byol_step(model, v1, v2, momentum, lr, wd, m, eta, tau, adamw=None, locals_=(), local_weight=1.0,
              var_cov=(0.0, 0.0)):
    """One step; momentum: dict parameter-key -> tensor (updated in place). Returns the loss.
    adamw: dict(exp_avg_sq=..., step=...) to step with AdamW instead of LARS (momentum is its
    first moment). local_weight: a local view's terms' weight (the global ones' 1); var_cov:
    the weights of VICReg's variance and covariance terms on the online projections of both
    global views, added to the loss that is differentiated (the loss returned is BYOL's)."""
    model.train()
    params = model.trained_parameters()
    y1, y2 = model.online(v1), model.online(v2)
    p1 = model.predictor(y1)
    p2 = model.predictor(y2)
    with torch.no_grad():
        z1 = model.target(v1)
        z2 = model.target(v2)
    loss = regression_loss(p1, z2) + regression_loss(p2, z1)
    if len(locals_):  # multi-crop: each local view predicts both targets; 2 x the weighted mean of the terms
        local = 0
        for x in locals_:
            pl = (model.local_predictor or model.predictor)(model.online(x))
            local = local + regression_loss(pl, z1) + regression_loss(pl, z2)
        loss = (loss + local_weight * local) * 2 / (2 + 2 * len(locals_) * local_weight)
    extra = 0
    if var_cov[0] or var_cov[1]:
        for y in (y1, y2):
            v, c = vicreg_var_cov(y)
            extra = extra + var_cov[0] * v + var_cov[1] * c
    grads = torch.autograd.grad(loss + extra, [p for _, p in params])
    if adamw is not None:
        adamw_(params, dict(zip([k for k, _ in params], grads)), momentum, adamw["exp_avg_sq"], lr, wd, adamw["step"])
        adamw["step"] += 1
    else:
        lars_(params, dict(zip([k for k, _ in params], grads)), momentum, lr, wd, m, eta)
    with torch.no_grad():
        for t, o in zip(model.target.parameters(), model.online.parameters()):
            t.mul_(tau).add_((1 - tau) * o)
    return loss.item()


def full_state(model, momentum, exp_avg_sq=None):
    """Every tensor byol.c reads or writes, by key (num_batches_tracked dropped)."""
    out = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    for k, v in momentum.items():
        out[f"momentum.{k}"] = v
    for k, v in (exp_avg_sq or {}).items():
        out[f"exp_avg_sq.{k}"] = v
    return out


def load_full_state(model, state, dtype):
    """Inverse of full_state; returns the momentum dict (zeros where absent)."""
    sd = model.state_dict()
    for k in sd:
        if k.endswith("num_batches_tracked"):
            continue
        sd[k].copy_(torch.as_tensor(state[k], dtype=sd[k].dtype))
    model.to(dtype)
    momentum = {}
    for k, p in model.trained_parameters():
        v = state.get(f"momentum.{k}")
        momentum[k] = torch.zeros_like(p) if v is None else torch.as_tensor(v, dtype=dtype).clone()
    return momentum


class KinkMargin:
    """Records, while active, the smallest |x| / rms(x) over every ReLU input: how close the step
    came to a kink. Where a ReLU input lies within float32's rounding of zero, float32 and float64
    can send its gradient different ways, a discontinuity no tolerance covers."""

    def __enter__(self):
        self.margin, self._relu = math.inf, F.relu
        outer = self

        def relu(x, inplace=False):
            with torch.no_grad():
                rms = x.detach().double().pow(2).mean().sqrt().item()
                if rms > 0:
                    outer.margin = min(outer.margin, x.detach().double().abs().min().item() / rms)
            return outer._relu(x, inplace=inplace)

        F.relu = relu
        return self

    def __exit__(self, *exc):
        F.relu = self._relu


def run_steps(cfg, state, views, lr, wd, m, eta, tau, dtype, margins=None, pred_lr=None, dino=None, adam_step=None,
              locals_=None, local_weight=1.0, var_cov=(0.0, 0.0)):
    """Runs len(views) steps from `state` (dict of float32 numpy arrays) in `dtype`; returns
    (losses, final state as float64 numpy arrays). `margins`, a list, receives each step's
    KinkMargin. SimSiam (cfg["method"]) steps with SGD, its predictor at pred_lr; DINO with SGD
    and the loss settings of `dino` (dino_step's keywords)."""
    torch.manual_seed(0)
    model = make_model(cfg)
    momentum = load_full_state(model, state, dtype)
    adamw = None
    if adam_step is not None:  # AdamW from its state at step adam_step
        adamw = dict(step=adam_step + 1, exp_avg_sq={
            k: torch.as_tensor(state[f"exp_avg_sq.{k}"], dtype=dtype).clone() for k, _ in model.trained_parameters()})
    losses = []
    for i in range(views.shape[0]):
        v = torch.as_tensor(views[i], dtype=dtype)
        loc = [] if locals_ is None else [torch.as_tensor(x, dtype=dtype) for x in locals_[i]]
        with KinkMargin() as k:
            if isinstance(model, SimSiam):
                losses.append(simsiam_step(model, v[0], v[1], momentum, lr, pred_lr, wd, m,
                                           stop_grad=not cfg.get("no_stop_grad", 0)))
            elif isinstance(model, Dino):
                losses.append(dino_step(model, v[0], v[1], momentum, lr, wd, m, tau, **dino, locals_=loc))
            else:
                losses.append(byol_step(model, v[0], v[1], momentum, lr, wd, m, eta, tau, adamw, locals_=loc,
                                        local_weight=local_weight, var_cov=var_cov))
        if margins is not None:
            margins.append(k.margin)
    sq = adamw["exp_avg_sq"] if adamw else None
    return losses, {k: v.detach().double().numpy() for k, v in full_state(model, momentum, sq).items()}


# ---------------------------------------------------------------- a random mid-training state

def random_state(cfg, seed, with_momentum=True, target_noise=0.05, momentum_scale=1.0):
    """A state that looks like training is under way: torchvision's init, then BN affine and
    running statistics moved off their defaults, a target that differs from the online network,
    and (optionally) non-zero momentum. Returns float32 numpy arrays by key."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = make_model(cfg)
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
    with torch.no_grad():
        heads = list(model.predictor.modules()) if hasattr(model, "predictor") else []
        for mod in list(model.online.modules()) + heads:
            if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
                mod.weight.copy_(1 + 0.2 * torch.randn(mod.weight.shape, generator=g))
                mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=g))
                mod.running_mean.copy_(0.1 * torch.randn(mod.running_mean.shape, generator=g))
                mod.running_var.copy_(0.5 + torch.rand(mod.running_var.shape, generator=g))
    if isinstance(model, Dino):  # a center under way: a quarter of the outputs' size
        with torch.no_grad():
            model.dino.center.copy_(0.25 * torch.randn(model.dino.center.shape, generator=g))
    if isinstance(model, (Byol, Dino)):
        with torch.no_grad():
            model.target.load_state_dict(model.online.state_dict())
            for k, v in model.target.state_dict().items():
                if v.dtype.is_floating_point:
                    scale = v.abs().mean() if v.numel() else 0
                    v.add_(target_noise * scale * torch.randn(v.shape, generator=g))
    state = {k: v.detach().float().numpy().copy() for k, v in full_state(model, {}).items()}
    if with_momentum:
        # Magnitudes like those momentum 0.9 accumulates, about ten updates' worth: 10*eta*|p|
        # per element for LARS-adapted weights (eta 0.02), ten small gradients for biases and BN
        # parameters.
        for k, p in model.trained_parameters():
            scale = 0.2 * p.detach().pow(2).mean().sqrt() if p.ndim > 1 else 0.5
            scale = scale * momentum_scale
            state[f"momentum.{k}"] = (scale * torch.randn(p.shape, generator=g)).float().numpy()
    return state


# ---------------------------------------------------------------- safetensors (minimal)

_DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32}
_NAMES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.int64): "I64",
          np.dtype(np.int32): "I32"}


def save_safetensors(path, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k])
        b = a.tobytes()
        header[k] = {"dtype": _NAMES[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for k, v in header.items():
        b, e = v["data_offsets"]
        out[k] = np.frombuffer(data[8 + n + b:8 + n + e], dtype=_DTYPES[v["dtype"]]).reshape(v["shape"]).copy()
    return out, meta


def rel_update_error(before, after_ours, after_ref):
    """||(ours - before) - (ref - before)|| / ||ref - before||, in float64."""
    d_ref = after_ref.astype(np.float64) - before.astype(np.float64)
    d_ours = after_ours.astype(np.float64) - before.astype(np.float64)
    den = math.sqrt(float((d_ref ** 2).sum()))
    num = math.sqrt(float(((d_ours - d_ref) ** 2).sum()))
    return num / den if den > 0 else (0.0 if num == 0 else math.inf)
