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
    # the README is the short front page; the rest lives in docs/
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    packages=find_packages(include=['davarocr_mmcv', 'davarocr_mmcv.*']),
    # what the code needs (vermin; tests/test_python_versions.py); the suite
    # ran on 3.11 and 3.12 (docs/installation.md)
    python_requires='>=3.8',
    # mmcv-full must be installed first (make venv builds it): pip finds it
    # and builds nothing. Left out on purpose (docs/installation.md):
    # torchvision (must match the user's torch), opencv (opencv-python or
    # -headless, the user's choice: <4.11 with numpy 1, >=4.11 with numpy
    # 2), setuptools<81 (building mmcv-full only), mmcls, pytest (the test
    # suite only). numpy 2: the suite passed with it (docs/installation.md).
    install_requires=[
        'mmcv-full==1.7.1',
        'mmdet>=2.28,<2.29',
        'torch',
        'numpy>=1.23,<2.6',
        'yapf==0.40.1',
    ],
    classifiers=[
        'License :: OSI Approved :: Apache Software License',
        'Programming Language :: Python :: 3',
        'Programming Language :: Python :: 3.11',
        'Programming Language :: Python :: 3.12',
    ],
)
