from setuptools import find_packages, setup

setup(
    name="data2vec_plugin",
    version="0.1.0",
    description="data2vec / data2vec 2.0 self-supervised pretraining as a fairseq user-dir plugin",
    packages=find_packages(include=["data2vec_plugin", "data2vec_plugin.*"]),
    python_requires=">=3.10",
    install_requires=["torch>=2.1", "numpy", "soundfile", "omegaconf", "hydra-core"],
    extras_require={"vision": ["timm", "torchvision", "pillow"], "text": ["sentencepiece"],
                    "hf": ["transformers", "safetensors"], "plot": ["matplotlib"]},
    entry_points={"console_scripts": [
        "d2v-prepare-audio=data2vec_plugin.cli.prepare_audio:main",
    ]},
)
