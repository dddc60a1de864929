"""Train the bundled digits with Adam, a cosine learning-rate schedule,
validation data, early stopping and a progress bar, then report test accuracy.

    python examples/train_digits.py
"""
import nncore
from nncore.datasets import train_test_split

X, y = nncore.load_digits()
X_train, X_test, y_train, y_test = train_test_split(X, y, test_fraction=0.2, seed=0)
X_train, X_val, y_train, y_val = train_test_split(X_train, y_train, test_fraction=0.2, seed=1)

model = nncore.Sequential(
    [nncore.Dense(64, 64, activation="relu"), nncore.Dense(64, 10, activation="softmax")],
    loss="cross_entropy",
    optimizer=nncore.Adam(lr=nncore.schedules.Cosine(0.01, T_max=60)),
    seed=0,
)
history = model.fit(
    X_train, y_train, epochs=60, batch_size=32,
    validation_data=(X_val, y_val),
    early_stopping=nncore.EarlyStopping(monitor="val_loss", patience=8),
    verbose=1,
)
print(f"trained {len(history.epoch)} epochs; best val_loss {min(history.history['val_loss']):.4f}")
print("test:", model.evaluate(X_test, y_test))
