"""Learn: datasets from a plant (excitation signals, NARX features), training of the
forward-kinematics and dynamics nets with Keras, and their exports (.keras, .tflite, int8
.tflite, .onnx)."""
