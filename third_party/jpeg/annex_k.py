"""The example quantization tables of ITU-T T.81 (JPEG) Annex K, and the zig-zag order.

Provenance: ITU-T Recommendation T.81 (09/92) | ISO/IEC 10918-1:1994, "Information technology -
Digital compression and coding of continuous-tone still images - Requirements and guidelines":
Table K.1 (luminance) and Table K.2 (chrominance), given there in natural (row-major) order, and
Figure A.6 (the zig-zag sequence of the 64 DCT coefficients). These are the tables that the
Independent JPEG Group's libjpeg scales by its quality setting (``jpeg_set_quality``); the tests
check them against the tables libjpeg writes at quality 50, where the scale is 1.
"""

# Table K.1: luminance quantization table, natural order (row = vertical frequency).
LUMINANCE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)

# Table K.2: chrominance quantization table, natural order.
CHROMINANCE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
)

# Figure A.6: entry k is the natural (row-major) index of the k-th coefficient in zig-zag order.
ZIGZAG = (
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
    12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
    35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
    58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
)
