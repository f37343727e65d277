"""deepfake-detect: can a spectrogram CNN tell human music from AI-generated music?

Label convention everywhere: 0 = human, 1 = AI-generated; a score is P(AI-generated).
"""

HUMAN = 0
AI = 1
LABEL_NAMES = {HUMAN: "human", AI: "ai"}

__version__ = "0.1.0"
