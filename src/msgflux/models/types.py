"""Model-type mixins: a model's ``model_type`` comes from the one it inherits.

>>> class MyChat(BaseModel, ChatCompletionModel): ...
>>> MyChat.model_type
'chat_completion'
"""

from __future__ import annotations

__all__ = [
    "AnyToAnyModel",
    "AudioClassifierModel",
    "AudioEmbedderModel",
    "AudioTextToTextModel",
    "AudioToAudioModel",
    "BatchedChatCompletionModel",
    "ChatCompletionModel",
    "DepthEstimationModel",
    "ImageClassifierModel",
    "ImageEmbedderModel",
    "ImageSegmenterModel",
    "ImageTextTo3DModel",
    "ImageTextToImageModel",
    "ImageTextToVideoModel",
    "ImageTo3DModel",
    "ImageToImageModel",
    "ImageToTextModel",
    "MaskGenModel",
    "ModerationModel",
    "OCRModel",
    "ObjectDetectorModel",
    "SpeechToTextModel",
    "TabularClassifierModel",
    "TabularRegressorModel",
    "TextClassifierModel",
    "TextEmbedderModel",
    "TextRerankerModel",
    "TextTo3DModel",
    "TextToImageModel",
    "TextToMusicModel",
    "TextToSpeechModel",
    "TextToVideoModel",
    "TextTranslationModel",
    "VADModel",
    "VideoClassifierModel",
    "VideoTextToAudioModel",
    "VideoTextToTextModel",
    "VideoTextToVideoModel",
    "ZeroShotImageClassifierModel",
    "ZeroShotTextClassifierModel",
]


class ChatCompletionModel:
    model_type = "chat_completion"


class BatchedChatCompletionModel:
    model_type = "batched_chat_completion"


class ModerationModel:
    model_type = "moderation"


class AudioClassifierModel:
    model_type = "audio_classifier"


class ImageClassifierModel:
    model_type = "image_classifier"


class VideoClassifierModel:
    model_type = "video_classifier"


class TabularClassifierModel:
    model_type = "tabular_classifier"


class TextClassifierModel:
    model_type = "text_classifier"


class ZeroShotImageClassifierModel:
    model_type = "zero_shot_image_classifier"


class ZeroShotTextClassifierModel:
    model_type = "zero_shot_text_classifier"


class AudioEmbedderModel:
    model_type = "audio_embedder"


class ImageEmbedderModel:
    model_type = "image_embedder"


class TextEmbedderModel:
    model_type = "text_embedder"


class TextToSpeechModel:
    model_type = "text_to_speech"


class AudioToAudioModel:
    model_type = "audio_to_audio"


class TextToMusicModel:
    model_type = "text_to_music"


class VideoTextToAudioModel:
    model_type = "video_text_to_audio"


class TextToImageModel:
    model_type = "text_to_image"


class ImageTextToImageModel:
    model_type = "image_text_to_image"


class ImageToImageModel:
    model_type = "image_to_image"


class AudioTextToTextModel:
    model_type = "audio_text_to_text"


class SpeechToTextModel:
    model_type = "speech_to_text"


class ImageToTextModel:
    model_type = "image_to_text"


class OCRModel:
    model_type = "ocr"


class TextTranslationModel:
    model_type = "text_translation"


class VideoTextToTextModel:
    model_type = "video_text_to_text"


class ImageTextToVideoModel:
    model_type = "image_text_to_video"


class TextToVideoModel:
    model_type = "text_to_video"


class VideoTextToVideoModel:
    model_type = "video_text_to_video"


class ImageTo3DModel:
    model_type = "image_to_3d"


class ImageTextTo3DModel:
    model_type = "image_text_to_3d"


class TextTo3DModel:
    model_type = "text_to_3d"


class AnyToAnyModel:
    model_type = "any_to_any"


class DepthEstimationModel:
    model_type = "depth_estimation"


class ImageSegmenterModel:
    model_type = "image_segmenter"


class MaskGenModel:
    model_type = "mask_gen"


class ObjectDetectorModel:
    model_type = "object_detector"


class VADModel:
    model_type = "vad"


class TabularRegressorModel:
    model_type = "tabular_regressor"


class TextRerankerModel:
    model_type = "text_reranker"
