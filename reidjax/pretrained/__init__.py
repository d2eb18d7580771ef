"""Pretrained weights: torchvision's `.pth` read without PyTorch (`pth`), ImageNet ResNet-50
weights into the network (`weights`), 2D to 3D inflation (`inflation`)."""
