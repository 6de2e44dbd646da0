"""How reconstructions are scored (paper 5.1.3): ``metrics`` (PSNR, MS-SSIM, LPIPS, bpp),
``f1`` (the ICDAR 2015 word-spotting F1 protocol) and ``spotting`` (the OCR spotters run on
reconstructions).

May import: ``textboost.text``, ``textboost.errors``.
"""
