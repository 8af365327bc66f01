"""How far standard scikit-learn models get on the NAS benchmark's test splits.

    python bench/reference_models.py [--datasets diabetes anes96 ...] [--split-seeds 0 1 ...]

Context for ``bench/nas_bench.py``'s targets: its datasets and the same split
(``cerebros.data.split_indices``, 25% test), each model family tuned by 5-fold
cross-validation on the non-test rows only, then scored once on the test rows. The "best
family" column picks the highest test score after seeing them all, so it is an optimistic
ceiling for these families, not something a search could choose. Prints a markdown table,
with each family's mean over the splits when there are several.
"""
import argparse
import os
import sys
import warnings

import numpy as np
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor, RandomForestClassifier
from sklearn.ensemble import RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LassoCV, LogisticRegressionCV, RidgeCV
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cerebros import data  # noqa: E402  (after the path fix, so the bench runs from a checkout)
from nas_bench import DATASETS  # noqa: E402  (beside this script)


def _tuned(model, grid):
    return GridSearchCV(model, grid, cv=5)


def families(task):
    """``{name: estimator}``, each behind a StandardScaler; regression targets are standardised too."""
    if task == "classification":
        models = {
            "logistic (CV)": LogisticRegressionCV(max_iter=5000),
            "SVC rbf": _tuned(SVC(), {"C": [0.3, 1, 3, 10, 30], "gamma": ["scale", 0.003, 0.01, 0.03]}),
            "k-NN": _tuned(KNeighborsClassifier(), {"n_neighbors": [1, 3, 5, 9, 15]}),
            "random forest": RandomForestClassifier(500, random_state=0),
            "gradient boosting": HistGradientBoostingClassifier(random_state=0),
            "MLP": _tuned(MLPClassifier(max_iter=2000, random_state=0), {"alpha": [1e-4, 1e-2, 1, 10]}),
        }
        return {name: make_pipeline(StandardScaler(), model) for name, model in models.items()}
    models = {
        "ridge (CV)": RidgeCV(alphas=np.logspace(-3, 3, 25)),
        "lasso (CV)": LassoCV(random_state=0),
        "SVR rbf": _tuned(SVR(), {"C": [0.1, 0.3, 1, 3], "epsilon": [0.1, 0.3, 0.6], "gamma": ["scale", 0.01, 0.03]}),
        "random forest": RandomForestRegressor(500, min_samples_leaf=5, random_state=0),
        "gradient boosting": _tuned(HistGradientBoostingRegressor(random_state=0),
                                    {"max_depth": [2, 3], "learning_rate": [0.03, 0.1]}),
        "MLP": _tuned(MLPRegressor(max_iter=2000, early_stopping=True, random_state=0),
                      {"alpha": [1e-2, 1, 10, 30]}),
    }
    return {name: TransformedTargetRegressor(make_pipeline(StandardScaler(), model), transformer=StandardScaler())
            for name, model in models.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(data.BUNDLED),
                        choices=list(DATASETS))
    parser.add_argument("--split-seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args(argv)

    header = None
    for name in args.datasets:
        X, y, task = DATASETS[name]()
        score = accuracy_score if task == "classification" else r2_score
        split_scores = []
        for split_seed in args.split_seeds:
            train, validation, test = data.split_indices(y, task, seed=split_seed)
            rest = np.concatenate([train, validation])
            scores = {}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                warnings.simplefilter("ignore", FutureWarning)  # scikit-learn's notices of changing defaults
                for family, model in families(task).items():
                    scores[family] = score(y[test], model.fit(X[rest], y[rest]).predict(X[test]))
            if header != list(scores):
                header = list(scores)
                print("\n| dataset | split seed | " + " | ".join(header) + " | best family |")
                print("|---" * (len(header) + 3) + "|")
            split_scores.append(scores)
            print_row(name, split_seed, scores)
        if len(split_scores) > 1:
            print_row(name, "mean", {family: np.mean([scores[family] for scores in split_scores])
                                     for family in header})


def print_row(name, split, scores):
    best = max(scores, key=scores.get)
    print(f"| {name} | {split} | " + " | ".join(f"{value:.4f}" for value in scores.values())
          + f" | {scores[best]:.4f} ({best}) |", flush=True)


if __name__ == "__main__":
    main()
