"""The digits config shrunk for tests: a 4-filter ResNet, two steps."""

from mvmr_keras.configs import digits as digits_config


def tiny_config(**overrides):
    config = digits_config.get_config()
    config.backbone_width = 4
    config.backbone_depths = (1, 1, 1, 1)
    config.representations = "pixels"  # the cheapest; the others have their own tests
    config.projector = "32-32"
    config.epochs = 2
    config.steps_per_epoch = 2
    config.batch_size = 16
    config.warmup_epochs = 1
    config.evaluation.epochs = 2  # the linear evaluation after training
    config.evaluation.augmented_passes = 0
    config.distribution = ""  # one device; tests/test_data_parallel*.py set data_parallel
    config.num_devices = 0
    config.update(overrides)
    return config
