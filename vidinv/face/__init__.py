"""Face front-end: detection, landmarks, tracking, alignment, temporal smoothing, inverse warp, blending.

Geometry modules (numpy / OpenCV / PIL, imported on demand, never here):
:mod:`vidinv.face.align` (FFHQ quad, crop recipe, fast aligned crop, inverse warp),
:mod:`vidinv.face.smoothing` (streaming Gaussian, two-stage quad smoother, One-Euro filter, jitter),
:mod:`vidinv.face.blend` (blend masks, feathering, compositing back into the frame).
All geometry is in frame pixel coordinates (float64, x = column, y = row).
"""
