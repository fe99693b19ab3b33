from setuptools import find_packages, setup


def read_version():
    scope = {}
    with open('davarocr_mmcv/version.py') as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='davarocr-mmcv',
    version=read_version(),
    description=('Checkpoint and evaluation hooks of DavarOCR, rebuilt for '
                 'mmcv-full 1.7.1 and mmdet 2.28'),
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    packages=find_packages(include=['davarocr_mmcv', 'davarocr_mmcv.*']),
    python_requires='>=3.8',
    install_requires=[
        'mmcv-full==1.7.1',
        'mmdet>=2.28,<2.29',
        'torch',
        'numpy<2',
    ],
    classifiers=[
        'License :: OSI Approved :: Apache Software License',
        'Programming Language :: Python :: 3',
    ],
)
