"""Named index sets of mediapipe's 478-point face mesh, in one place.

"Right" and "left" are the subject's: the subject's right eye appears on the image's left.
"""

from __future__ import annotations

import numpy as np

# Points that move little with expression (forehead, nose bridge and tip, inner eye corners, temples,
# cheekbones): head pose is fitted on these so that smiles and jaw drops are not mistaken for head motion.
RIGID = np.array([
    10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1,
    133, 362, 33, 263, 127, 356, 234, 454, 162, 389, 21, 251,
    67, 297, 109, 338, 103, 332, 54, 284, 116, 345, 123, 352,
])

# Eyelids, as (upper, lower) pairs from the outer to the inner corner.
RIGHT_EYE_CORNERS = (33, 133)
LEFT_EYE_CORNERS = (263, 362)
RIGHT_LID_PAIRS = np.array([(246, 7), (161, 163), (160, 144), (159, 145), (158, 153), (157, 154), (173, 155)])
LEFT_LID_PAIRS = np.array([(466, 249), (388, 390), (387, 373), (386, 374), (385, 380), (384, 381), (398, 382)])
RIGHT_EYE = np.array([33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7])
LEFT_EYE = np.array([263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249])
RIGHT_IRIS = np.arange(468, 473)  # centre first
LEFT_IRIS = np.arange(473, 478)
RIGHT_IRIS_CENTRE, LEFT_IRIS_CENTRE = 468, 473

# Brows: upper contour from outer to inner.
RIGHT_BROW = np.array([70, 63, 105, 66, 107, 46, 53, 52, 65, 55])
LEFT_BROW = np.array([300, 293, 334, 296, 336, 276, 283, 282, 295, 285])
RIGHT_BROW_INNER, LEFT_BROW_INNER = (107, 55), (336, 285)
RIGHT_BROW_OUTER, LEFT_BROW_OUTER = (70, 46), (300, 276)

# Lips.
MOUTH_CORNERS = (61, 291)
INNER_MOUTH_CORNERS = (78, 308)
UPPER_LIP_TOP, UPPER_LIP_INNER, LOWER_LIP_INNER, LOWER_LIP_BOTTOM = 0, 13, 14, 17
INNER_LIP_UPPER = np.array([78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308])  # corner to corner
INNER_LIP_LOWER = np.array([78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308])
INNER_LIP_LOOP = np.concatenate([INNER_LIP_UPPER, INNER_LIP_LOWER[::-1][1:-1]])  # closed polygon, 20 points
OUTER_LIP_LOOP = np.array([61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291,
                           375, 321, 405, 314, 17, 84, 181, 91, 146])
LIPS = np.unique(np.concatenate([INNER_LIP_LOOP, OUTER_LIP_LOOP,
                                 [191, 80, 81, 82, 312, 311, 310, 415, 95, 88, 178, 87, 317, 402, 318, 324,
                                  76, 62, 183, 42, 41, 38, 12, 268, 271, 272, 407, 292, 306,
                                  77, 96, 89, 90, 179, 180, 86, 85, 15, 16, 316, 315, 403, 404, 319, 320,
                                  307, 325, 184, 74, 73, 72, 11, 302, 303, 304, 408]]))

# Nose, chin, cheeks.
NOSE_TIP, SUBNASALE, NASION = 1, 2, 168
NOSE_ALAR = (129, 358)
CHIN = 152
CHEEKS = (118, 347)
FACE_OVAL = np.array([10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
                      377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109])
