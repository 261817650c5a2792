"""Data: datasets, image<->latent codecs, and pre-encoded latent shards.

  imagenet.py       ImageNet-256 (paper scale): ImageFolder tree, ADM center crop
  fashion_mnist.py  embedded default: Fashion-MNIST padded to 32×32, checksums verified
  scenes.py         embedded text-to-image data: procedural shapes with GenEval-template captions
  text_encoders.py  frozen text encoders (MiniLM offline; a causal LM on clusters), cached prompt banks
  codecs.py         Codec interface; SD VAE (× 0.18215) and lossless space-to-depth; build_codec
  latents.py        encode_dataset -> memory-mappable shards + manifest (resumable); LatentDataset

    ds = FashionMNIST("train")                                   # (1, 32, 32) in [-1, 1], label
    encode_dataset(ds, build_codec("space-to-depth"), "latents/fmnist-train", flip=True)
    latents = LatentDataset("latents/fmnist-train")              # (4, 16, 16), label
"""
from .codecs import CODECS, Codec, SDVAECodec, SpaceToDepthCodec, build_codec
from .fashion_mnist import CLASSES as FASHION_MNIST_CLASSES
from .fashion_mnist import FashionMNIST, load_fashion_mnist, read_idx
from .imagenet import ImageNet, center_crop_arr, list_image_folder
from .latents import EncodeReport, LatentDataset, encode_dataset, read_manifest
from .scenes import Scenes

__all__ = ["CODECS", "Codec", "SDVAECodec", "SpaceToDepthCodec", "build_codec", "FASHION_MNIST_CLASSES",
           "FashionMNIST", "load_fashion_mnist", "read_idx", "ImageNet", "center_crop_arr", "list_image_folder",
           "EncodeReport", "LatentDataset", "encode_dataset", "read_manifest", "Scenes"]
