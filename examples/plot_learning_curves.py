"""Train on the bundled digits with a cosine learning-rate schedule, validation
data and early stopping, and save the learning curves as a PNG (the image in
the README, docs/learning_curves.png).

    pip install "nncore-cpu[plot]"
    python examples/plot_learning_curves.py [OUTPUT.png]
"""
import sys

import matplotlib

matplotlib.use("Agg")  # render to a file; no display needed

import nncore  # noqa: E402
from nncore.datasets import train_test_split  # noqa: E402

output = sys.argv[1] if len(sys.argv) > 1 else "docs/learning_curves.png"
X, y = nncore.load_digits()
X_train, X_val, y_train, y_val = train_test_split(X, y, test_fraction=0.2, seed=0)
model = nncore.Sequential(
    [nncore.Dense(64, 32, activation="relu"), nncore.Dense(32, 10, activation="softmax")],
    loss="cross_entropy", optimizer=nncore.Adam(lr=nncore.schedules.Cosine(0.01, T_max=40)),
    seed=0)
history = model.fit(X_train, y_train, epochs=40, batch_size=32,
                    validation_data=(X_val, y_val),
                    early_stopping=nncore.EarlyStopping(monitor="val_loss", patience=5))
axes = history.plot()
axes["loss"].figure.suptitle("nncore: 64-32-10 on the 8x8 digits (Adam, cosine schedule)")
axes["loss"].figure.savefig(output, dpi=100)
print(f"trained {len(history.epoch)} epochs, restored epoch {history.restored_epoch + 1}; "
      f"wrote {output}")
