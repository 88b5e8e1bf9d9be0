"""The diabetes model: the entry points mlinfra.toml names, in plain scikit-learn.

`load_data` and `load_evaluation_data` return (features, target): ten baseline measurements of
442 patients in their own units (age in years, bmi, blood pressure, six blood serum values) and
disease progression a year later. `build_estimator` returns an unfitted estimator; SEARCH_SPACE
draws its regularization strength from a distribution, so the search is a random one.
"""

from scipy.stats import loguniform
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

SEARCH_SPACE = {"ridge__alpha": loguniform(1e-3, 1e3)}


def _diabetes():
    diabetes = load_diabetes(as_frame=True, scaled=False)
    return diabetes.data, diabetes.target.rename("progression")


def load_data():
    """Four rows in five for training; the fifth is kept back for evaluation."""
    features, target = _diabetes()
    keep = features.index % 5 != 0
    return features[keep], target[keep]


def load_evaluation_data():
    features, target = _diabetes()
    held_out = features.index % 5 == 0
    return features[held_out], target[held_out]


def build_estimator():
    return make_pipeline(StandardScaler(), Ridge())
