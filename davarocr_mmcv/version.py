__version__ = '0.1.0'


def add_version_option(parser):
    """``--version`` on an argparse ``parser``: prints the tool's name and
    this package's version."""
    parser.add_argument('--version', action='version',
                        version=f'%(prog)s (davarocr-mmcv) {__version__}')
