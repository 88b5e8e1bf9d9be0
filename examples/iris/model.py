"""The iris model: the entry points mlinfra.toml names, in plain scikit-learn.

`load_data` and `load_evaluation_data` return (features, target); `build_estimator` returns an
unfitted estimator; SEARCH_SPACE maps its parameters to the values a search tries.
"""

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

SEARCH_SPACE = {
    "logisticregression__C": [0.1, 1.0, 10.0, 100.0],
    "logisticregression__fit_intercept": [True, False],
}


def _iris():
    """Snake-case column names (clients send them as JSON keys) and species names as labels."""
    iris = load_iris(as_frame=True)
    features = iris.data.rename(columns=lambda name: name.removesuffix(" (cm)").replace(" ", "_"))
    target = (
        iris.target.map(dict(enumerate(iris.target_names.tolist()))).astype(str).rename("species")
    )
    return features, target


def load_data():
    """Four rows in five for training; the fifth is kept back for evaluation."""
    features, target = _iris()
    keep = features.index % 5 != 0
    return features[keep], target[keep]


def load_evaluation_data():
    features, target = _iris()
    held_out = features.index % 5 == 0
    return features[held_out], target[held_out]


def build_estimator():
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
