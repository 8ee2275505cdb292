"""Models: ResNet and ViT backbones and their registry, the image encoder,
the projector, MV-MR, and DINO with its head."""

from mvmr_keras.models.backbones import BACKBONES, VIT_ARCHITECTURES, build_backbone
from mvmr_keras.models.dino import DINO
from mvmr_keras.models.dino_head import DINOHead
from mvmr_keras.models.encoder import ImageEncoder
from mvmr_keras.models.mvmr import MVMR
from mvmr_keras.models.projector import Projector
from mvmr_keras.models.resnet import RESNET_ARCHITECTURES, ResNetBackbone
from mvmr_keras.models.vit import VisionTransformerBackbone
