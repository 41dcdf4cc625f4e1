"""Every config field jaxcnn reads, with its meaning and default.

Config files in configs/ start from `base_config()` and override fields; the
result is locked, so a mistyped key (in a file or a --config.x=y flag) fails
at once instead of being silently ignored.
"""
from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()

  c.model = ml_collections.ConfigDict()
  c.model.name = 'lenet5'          # registry name, see jaxcnn.models.list_models()
  # Any other key under config.model is passed to the model as a field override.

  c.dataset = ml_collections.ConfigDict()
  c.dataset.name = 'digits'        # cifar10, mnist, fashion_mnist, svhn_cropped, digits; streaming: imagenet2012, imagefolder
  c.dataset.allow_download = True  # allow a TFDS download as the last source
  # Streaming datasets (jaxcnn/data/streaming.py, docs/data.md): read by
  # grain workers, decoded and resized on the host, never held whole.
  c.dataset.root = ''              # imagefolder: ROOT with train/<class>/* and val/<class>/* (or test/)
  c.dataset.image_size = 256       # streaming: each image decoded to SxS on the host (AlexNet: 256, then crop 227)
  c.dataset.resize_mode = 'center_crop'  # center_crop: shorter side to S, central SxS (the paper's); squash: whole image to SxS
  c.dataset.random_resized_crop = False  # train: random 8-100% area, 3/4-4/3 aspect box to SxS instead (eval: resize_mode)
  c.dataset.workers = -1           # decode processes per host; 0: threads in the train process; -1: one per 2 cores
  c.dataset.on_bad_image = 'skip'  # undecodable image: skip (warn naming it, count; deterministic) or fail (raise naming it)
  c.dataset.verify_images = 'header'  # imagefolder start-up check of every file: header, full (decode all), none
  c.data_dir = ml_collections.FieldReference(None, field_type=str)  # local data dir; None: $JAXCNN_DATA_DIR
  c.cache_dir = ml_collections.FieldReference(None, field_type=str)  # decoded-data cache; None: ~/.cache/jaxcnn
  c.tfds_data_dir = ml_collections.FieldReference(None, field_type=str)  # TFDS data dir; None: TFDS default

  c.input = ml_collections.ConfigDict()
  c.input.pad = 0                  # zero padding per side (MNIST 28 -> 32: 2)
  c.input.resize = 0               # bilinear resize to NxN on device (0: off)
  c.input.crop = 0                 # crop size (0: none); eval crops centrally
  c.input.random_crop = False      # train: random instead of central crop
  c.input.flip = False             # train: random left-right flip
  c.input.brightness = 0.0         # train: max brightness delta, 0..255 units
  c.input.contrast = (1.0, 1.0)    # train: contrast factor range; (1, 1) off
  c.input.normalize = 'unit'       # 'unit' (x/255), 'per_image', 'mean_std', 'cifar10_pixel_mean' (He et al.: minus the training mean image)
  c.input.mean = (0.0,)            # per-channel mean (0..255), for 'mean_std'
  c.input.std = (255.0,)           # per-channel std (0..255), for 'mean_std'
  # Keep the uint8 train split on every device and send each step only row
  # indices (jaxcnn/data/device_data.py): for fast accelerator steps the host
  # pipeline can't feed. Same batches, same results as the host pipeline.
  c.input.device_data = False

  c.batch_size = 128               # global batch, split across all devices
  c.eval_batch_size = 500          # global eval batch; the last one is padded
  c.num_epochs = 10.0              # training length in epochs ...
  c.num_train_steps = -1           # ... unless this is > 0
  c.seed = 0                       # params, dropout, augmentation, data order

  c.optim = ml_collections.ConfigDict()
  c.optim.learning_rate = 0.1      # base learning rate (mean-reduced loss)
  # 'sgd', or 'adam' (per-weight step sizes: binary nets' latent weights,
  # whose gradients are tiny, still move; momentum is then Adam's b1).
  c.optim.optimizer = 'sgd'
  c.optim.momentum = 0.9           # 0: plain gradient descent
  c.optim.nesterov = False         # Nesterov momentum
  c.optim.schedule = 'constant'    # constant, staircase_exp, discexp, cosine, step_50_75 (x decay_rate at 50% and 75% of the steps)
  c.optim.decay_rate = 0.1         # staircase_exp: factor per decay period
  c.optim.decay_epochs = 350.0     # staircase_exp: period length in epochs
  c.optim.discexp_a = 0.1          # discexp: factor per period
  c.optim.discexp_b = 5e6          # discexp: period length in samples seen
  c.optim.warmup_epochs = 0.0      # cosine: linear warm-up length

  c.l2 = ml_collections.ConfigDict()
  c.l2.mode = 'none'               # none; loss: rate*sum(w^2)/2; coupled: grad += rate*w
  c.l2.rate = 0.0                  # weight-decay rate
  c.l2.include = '.*'              # regex over kernel paths, e.g. 'local3|local4'

  c.ema_decay = 0.0                # EMA of params with TF num_updates warm-up; 0: off
  c.skip_nonfinite_updates = False  # skip NaN/Inf steps instead of stopping
  # Train-step compute: 'float32', or 'bfloat16' mixed precision (bf16
  # forward/backward; params, optimizer, loss, EMA, eval stay float32).
  # For GPUs/TPUs: on CPU, XLA emulates bf16 and it is slower.
  c.precision = 'float32'
  # CPU convolution library: 'auto' (oneDNN when it loads and the mesh is
  # one CPU device, else Eigen), 'onednn', 'eigen' or 'ynnpack' (jaxlib's
  # default); measured in docs/performance.md, jaxcnn/ops/cpu_options.py.
  # 'onednn_bf16': oneDNN multiplying bf16-rounded inputs with float32
  # accumulation (CPUs with AVX512_BF16 or AMX only; changes the numerics,
  # so not switchable on resume). Ignored on GPU/TPU.
  c.xla_cpu_conv = 'auto'

  c.log_every_steps = 100          # train metrics + the tutorial's log line
  c.write_summaries = True         # TensorBoard event files (jaxcnn/events.py; False: log only)
  # Every N steps one extra jitted pass on that step's batch (jaxcnn/summaries.py)
  # writes images, histograms and sparsity of activations/gradients/weights;
  # the ordinary train step is unchanged. 0: off.
  c.summary_every_steps = 0
  c.end_plots = False              # at the end: curves, confusion matrix, conv1 filters (PNG, jaxcnn/plots.py)
  # Which weights a finished run is used with (artifacts, reports, predict,
  # export, plots): 'auto' = EMA when the run keeps it, else the raw params.
  # Chosen by this setting, never by test-set accuracy.
  c.weights = 'auto'
  c.eval_every_steps = 1000        # full test-set evaluation (also at the end)
  c.checkpoint_every_steps = 1000  # orbax checkpoint (also at the end)
  c.keep_checkpoints = 3           # how many recent checkpoints orbax keeps (>= 1)
  # Resuming under a config that changes the trajectory (batch size, data,
  # lr, length, ...) is refused. To continue anyway, name the fields or
  # sections here, comma-separated ('num_epochs', 'optim', or '*' for all);
  # the old config.json is kept as config.<step>.json (jaxcnn/workdir.py).
  c.resume_override = ''

  # Compression (jaxcnn/compress, docs/compression.md). Off by default: with
  # method '' and init_from '' training is exactly the ordinary one.
  c.init_from = ''                 # trained workdir whose latest checkpoint seeds a new run
  c.init_from_weights = 'auto'     # 'params', 'ema', or 'auto' (ema when the run kept it)
  c.compress = ml_collections.ConfigDict()
  c.compress.method = ''           # '', prune, filter_prune, svd, binary, bwn, xnor
  c.compress.encoding = 'auto'     # sparse artifact: auto (smallest), relative, csr
  c.compress.index_bits = 8        # relative encoding: bits per index gap (4 or 8)
  c.compress.prune = ml_collections.ConfigDict()
  c.compress.prune.include = '.*'  # regex over kernel paths, e.g. 'conv.*|local3'
  c.compress.prune.exclude = ''    # regex of kernels to leave dense ('' none)
  c.compress.prune.scope = 'layer'  # 'layer': each kernel at the target; 'global' threshold
  c.compress.prune.sparsity = 0.9  # final fraction of selected weights set to zero
  c.compress.prune.schedule = 'gradual'  # one_shot, iterative, gradual (Zhu & Gupta)
  c.compress.prune.initial_sparsity = 0.0  # gradual: s_i
  c.compress.prune.begin_step = 0  # first pruning step (regularise before it)
  c.compress.prune.end_step = 1000  # gradual/iterative: target reached here
  c.compress.prune.frequency = 100  # gradual: steps between mask updates
  c.compress.prune.rounds = 4      # iterative: prune -> fine-tune rounds
  c.compress.prune.l1 = 0.0        # loss += l1 * sum|w| over selected kernels
  c.compress.prune.group_lasso = 0.0  # loss += rate * sum_filters ||W[..., o]||_2
  c.compress.filter_prune = ml_collections.ConfigDict()
  c.compress.filter_prune.include = 'conv'  # regex over conv layer paths
  c.compress.filter_prune.exclude = ''
  c.compress.filter_prune.ratio = 0.5  # fraction of each layer's filters removed
  c.compress.filter_prune.norm = 'l1'  # rank filters by 'l1' or 'l2' norm
  c.compress.svd = ml_collections.ConfigDict()
  c.compress.svd.include = 'local3|local4'  # regex over Dense layer paths
  c.compress.svd.conv_include = ''  # regex over conv paths (separable scheme)
  c.compress.svd.rank = 0          # fixed rank if > 0 ...
  c.compress.svd.param_ratio = 0.0  # ... else keep <= this fraction of weights ...
  c.compress.svd.energy = 0.0      # ... else the smallest rank with this energy
  # Binary methods (jaxcnn/compress/binary.py, docs/binary.md): 'binary' =
  # BinaryConnect (sign(w)), 'bwn' = alpha*sign(w) with alpha = mean|W| per
  # filter, 'xnor' = bwn weights plus binarised layer inputs.
  c.compress.binary = ml_collections.ConfigDict()
  c.compress.binary.include = '.*'  # regex over kernel paths; the CLI picks all but first and last layer
  c.compress.binary.exclude = ''   # regex of kernels kept float ('' none)
  c.compress.binary.stochastic = False  # binary: +1 with prob hard_sigmoid(w) in training (eval: sign)
  c.compress.binary.seed = 0       # stochastic: key = fold_in(key(seed), update count)
  c.compress.binary.clip = True    # clip latent weights to [-1, 1] after every update
  c.compress.binary.act_bits = 1   # xnor: bits of the binarised inputs (1, or 2..4 uniform levels)
  c.compress.binary.act_center = True  # xnor: subtract each example's per-channel mean before sign
  # Quantization (docs/quantization.md). kmeans: per-kernel scalar codebooks
  # (Deep Compression weight sharing); only nonzeros are clustered, so a
  # pruned net stays pruned. Fine-tuning trains the shared values only.
  c.compress.kmeans = ml_collections.ConfigDict()
  c.compress.kmeans.include = '.*'  # regex over kernel paths
  c.compress.kmeans.exclude = ''   # regex of kernels left unshared
  c.compress.kmeans.bits_conv = 4  # 4-D kernels: 2^bits centroids each
  c.compress.kmeans.bits_fc = 5    # 2-D (Dense) kernels: 2^bits centroids each
  c.compress.kmeans.init = 'linear'  # centroid init: linear, density, kmeans++
  c.compress.kmeans.iterations = 20  # Lloyd iterations (stops early when stable)
  c.compress.kmeans.seed = 0       # kmeans++ sampling seed
  c.compress.kmeans.grad = 'sum'   # centroid gradient: sum (Han et al.) or mean of its weights' grads
  # pq: product quantization of Dense kernels [in, out]: rows split into
  # in/sub_dim sub-spaces, each with 2^bits codewords of length sub_dim.
  # qcnn (Wu et al.) uses this section too but fits codewords to the layer's
  # OUTPUT on calibration batches instead of to the weights.
  c.compress.pq = ml_collections.ConfigDict()
  c.compress.pq.include = 'local3|local4'  # regex over Dense kernel paths (CLI: hidden Dense layers)
  c.compress.pq.exclude = ''
  c.compress.pq.sub_dim = 4        # d: sub-vector length (must divide the layer's inputs)
  c.compress.pq.bits = 4           # 2^bits codewords per sub-space
  c.compress.pq.iterations = 20    # k-means / Q-CNN alternating iterations
  c.compress.pq.seed = 0           # codeword init sampling
  c.compress.pq.grad = 'sum'       # codeword fine-tuning gradient: sum or mean
  c.compress.pq.calib_batches = 32  # qcnn: training batches of layer inputs (X^T X needs >= in rows)
  c.compress.pq.passes = 2         # qcnn: sweeps over sub-spaces with error correction
  # int8 (post-training) and qat (fake-quant training, STE): symmetric
  # per-output-channel weight scales, per-layer activation scales from
  # calibration batches; the artifact runs int8 x int8 -> int32 conv/matmul.
  c.compress.int8 = ml_collections.ConfigDict()
  c.compress.int8.include = '.*'   # regex over Conv/Dense layer paths
  c.compress.int8.exclude = ''
  c.compress.int8.weight_bits = 8  # 8, or 4 (int4: stored two per byte)
  c.compress.int8.act_bits = 8     # bits of the quantized layer inputs (2..8)
  c.compress.int8.calib_batches = 8  # training batches for the activation scales
  c.compress.int8.act_percentile = 100.0  # activation range: this percentile of |x| (100 = max)

  # Deep Compression (Han et al.; jaxcnn/compress/pipeline.py) with
  # compress.method='deep_compression': stage workdirs 1_prune (compress.prune
  # settings) -> 2_kmeans (compress.kmeans) -> Huffman-coded model.jxcz.
  c.compress.deep_compression = ml_collections.ConfigDict()
  c.compress.deep_compression.prune_steps = 1000  # stage 1: prune + fine-tune steps
  c.compress.deep_compression.quantize_steps = 500  # stage 2: codebook fine-tuning steps
  c.compress.deep_compression.quantize_lr_scale = 0.01  # stage 2 lr = this x optim.learning_rate

  # Knowledge distillation (Hinton et al.; jaxcnn/compress/distill.py). Off
  # while mode is 'frozen' and teacher_workdir is ''.
  c.distill = ml_collections.ConfigDict()
  c.distill.mode = 'frozen'        # frozen: teacher_workdir's checkpoint, never updated; joint: train both
  c.distill.teacher_workdir = ''   # frozen: trained workdir (its config.json builds the teacher)
  c.distill.teacher_weights = 'auto'  # 'params', 'ema', or 'auto' (ema when the teacher run kept it)
  c.distill.teacher_model = ''     # joint: registry name of the teacher trained alongside
  c.distill.loss = 'kd'            # kd: soft-target CE; logits: 1/2 ||s/T - t/T||^2
  c.distill.temperature = 4.0      # T; the soft term is scaled by T^2
  c.distill.hard_weight = 0.1      # lambda: weight of CE(student, labels)

  c.distributed = ml_collections.ConfigDict()
  c.distributed.coordinator_address = ''  # host:port; '' -> $JAX_COORDINATOR_ADDRESS
  c.distributed.num_processes = 0  # 0 -> $JAX_NUM_PROCESSES
  c.distributed.process_id = -1    # -1 -> $JAX_PROCESS_ID
  c.distributed.auto = False       # let jax.distributed auto-detect (SLURM, TPU)

  # Scale-out (docs/scaling.md). 'jit': jit over a ('data', 'model') mesh,
  # XLA inserts the collectives; 'pmap': explicit per-device towers
  # (shard_map + lax.pmean of the gradients, the TF tutorial's multi-GPU
  # scheme; no BatchNorm models on >1 device, no model axis).
  c.parallel = 'jit'
  c.mesh = ml_collections.ConfigDict()
  c.mesh.model = 1                 # devices on the 'model' axis; data axis = devices / model
  c.shard_params = ''              # regex of state paths split over 'model', e.g. 'fc6|fc7'; '' replicates all
  return c


# CIFAR-10 train-set channel statistics on the 0..255 scale.
CIFAR10_MEAN = (125.31, 122.95, 113.87)
CIFAR10_STD = (62.99, 62.09, 66.70)


def set_cifar_standard_input(c: ml_collections.ConfigDict) -> None:
  """Pad-4 random crop + flip, channel standardisation (ResNet-style)."""
  c.dataset.name = 'cifar10'
  c.input.pad = 4
  c.input.crop = 32
  c.input.random_crop = True
  c.input.flip = True
  c.input.normalize = 'mean_std'
  c.input.mean = CIFAR10_MEAN
  c.input.std = CIFAR10_STD


def set_cifar_tutorial_input(c: ml_collections.ConfigDict) -> None:
  """The TF tutorial's distorted_inputs / inputs (SPEC.md §1)."""
  c.dataset.name = 'cifar10'
  c.input.crop = 24
  c.input.random_crop = True
  c.input.flip = True
  c.input.brightness = 63.0
  c.input.contrast = (0.2, 1.8)
  c.input.normalize = 'per_image'


def set_smoke(c: ml_collections.ConfigDict, batch_size: int = 16) -> None:
  """A few real steps: what the test suite runs for every config."""
  c.num_train_steps = 3
  c.batch_size = batch_size
  c.eval_batch_size = 500
  c.log_every_steps = 1
  c.eval_every_steps = 0
  c.checkpoint_every_steps = 3
  c.summary_every_steps = 0
  c.end_plots = False


def load_sibling(this_file: str, name: str, arg=None):
  """get_config() of another file in the same configs/ directory."""
  import importlib.util
  import os
  path = os.path.join(os.path.dirname(os.path.abspath(this_file)),
                      name + '.py')
  spec = importlib.util.spec_from_file_location(f'_jaxcnn_config_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def compress_base(this_file: str, model_config: str, method: str, arg=None,
                  run: str = '') -> ml_collections.ConfigDict:
  """The start of a configs/compress/*.py config: configs/<model_config>.py
  (with `arg`) fine-tuned with compress `method` from the dense run's
  checkpoints in runs/<run> (default: the config's name, plus '_<arg>').

  `this_file` is the calling file: configs/ and runs/ are found from it, so
  a config names the same run from any working directory.
  """
  import os
  configs = os.path.dirname(os.path.dirname(os.path.abspath(this_file)))
  c = load_sibling(os.path.join(configs, 'x.py'), model_config, arg)
  c.init_from = os.path.join(os.path.dirname(configs), 'runs', run or (
      f'{model_config}_{arg}' if arg else model_config))
  c.compress.method = method
  return c


def set_cifar_sgd_recipe(c: ml_collections.ConfigDict, learning_rate: float,
                         num_epochs: float, weight_decay: float) -> None:
  """Momentum 0.9, 1-epoch warm-up + cosine, coupled L2 on all kernels."""
  c.batch_size = 128
  c.eval_batch_size = 1000
  c.num_epochs = num_epochs
  c.optim.learning_rate = learning_rate
  c.optim.momentum = 0.9
  c.optim.nesterov = True
  c.optim.schedule = 'cosine'
  c.optim.warmup_epochs = 1.0
  c.l2.mode = 'coupled'
  c.l2.rate = weight_decay
  c.l2.include = '.*'
  c.log_every_steps = 100
  c.eval_every_steps = 3900        # every 10 epochs at 390 steps/epoch
  c.checkpoint_every_steps = 1950
