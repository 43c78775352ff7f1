"""Help strings shared by several commands."""

DATA_HELP = "cifar10:PATH, cifar100:PATH, imagenet:PATH, digits (bundled) or synthetic"
DEVICE_HELP = "cpu, cuda, cuda:1 (default: cuda if present)"
