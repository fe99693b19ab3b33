# toolbox_crnn.py without mytoolbox in custom_imports: give it with
# --cfg-options custom_imports.imports=[davarocr_mmcv,mytoolbox]
_base_ = './toolbox_crnn.py'
custom_imports = dict(imports=['davarocr_mmcv'])
