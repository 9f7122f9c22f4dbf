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
        "d2v-prepare-text=data2vec_plugin.cli.prepare_text:main",
        "d2v-convert=data2vec_plugin.cli.convert:main",
        "d2v-extract-features=data2vec_plugin.cli.extract_features:main",
        "d2v-export-hf=data2vec_plugin.cli.export_hf:main",
        "d2v-plot=data2vec_plugin.cli.plot:main",
        "d2v-launch=data2vec_plugin.cli.launch:main",
    ]},
)
