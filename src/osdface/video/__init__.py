"""Video: restore every face of a clip, steadily (PyAV for decoding and encoding; an optional extra).

    from osdface.video import VideoFaceRestorer, Stabilisers, probe, read_frames
    restorer = VideoFaceRestorer(pipe, make_face_restorer(pipe, small_faces=False), Stabilisers(landmark_radius=3))
    for frame in restorer(read_frames(probe("clip.mp4"))):
        frame.rgb                     # upright HWC uint8 RGB, faces restored

``osdface restore clip.mp4 --output DIR`` does this with segments, resume, audio copy and a report.
PyAV is imported only when a video is opened.
"""

from .cuts import CutDetector
from .io import VIDEO_EXTENSIONS, Frame, VideoEncoder, VideoInfo, is_video, probe, read_frames, remux
from .restorer import PromptSmoother, RestoredFrame, Stabilisers, VideoFaceRestorer
from .tracking import FaceTracker, Track, local_line_fit, smoothed

__all__ = ["VIDEO_EXTENSIONS", "CutDetector", "FaceTracker", "Frame", "PromptSmoother", "RestoredFrame", "Stabilisers",
           "Track", "VideoEncoder", "VideoFaceRestorer", "VideoInfo", "is_video", "local_line_fit", "probe", "read_frames",
           "remux", "smoothed"]
