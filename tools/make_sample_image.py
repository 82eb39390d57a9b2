"""Make the demo's sample image (the project's own, freely redistributable): a simple drawing of a
person, a dog and a ball, nudged by gradient ascent on the embedded model's class logits so that the
128-image fixture model recognises them. Needs the ``export`` extra.

    python tools/make_sample_image.py ../shared/models/yolov8n-seg-coco128.pt src/edgeseg/assets/sample.jpg
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import torch

from edgeseg.export import _find_segment_head, load_checkpoint, split_head

H, W = 480, 640
# (class id, box x1 y1 x2 y2 in the 640x480 image)
TARGETS = [(0, (150, 90, 290, 430)), (16, (360, 270, 560, 430)), (32, (470, 150, 530, 210))]


def drawing() -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    for y in range(H):  # sky gradient
        img[y] = (235 - y // 6, 200 - y // 8, 150 - y // 10)
    cv2.rectangle(img, (0, 330), (W, H), (70, 150, 80), -1)  # grass
    cv2.circle(img, (220, 125), 32, (150, 185, 235), -1)  # head
    cv2.rectangle(img, (180, 160), (260, 300), (60, 60, 200), -1)  # shirt
    cv2.rectangle(img, (185, 300), (255, 425), (120, 60, 40), -1)  # trousers
    cv2.ellipse(img, (460, 340), (90, 45), 0, 0, 360, (50, 110, 170), -1)  # dog body
    cv2.circle(img, (545, 300), 30, (50, 110, 170), -1)  # dog head
    cv2.circle(img, (500, 180), 28, (40, 200, 240), -1)  # ball
    return img


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("weights")
    ap.add_argument("output")
    ap.add_argument("--steps", type=int, default=120)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = load_checkpoint(args.weights)
    head = _find_segment_head(model, args.weights)
    strides = [int(s) for s in head.stride.tolist()]
    base = torch.from_numpy(drawing()[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255
    delta = torch.zeros_like(base, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=0.01)
    pad = (640 - H) // 2
    with split_head(head):
        for step in range(args.steps):
            img = (base + delta).clamp(0, 1)
            x = torch.nn.functional.pad(img, (0, 0, pad, pad), value=114 / 255)
            outs = model(x)
            loss = 0.0
            for i, s in enumerate(strides):
                cls = outs[3 * i][0]  # [h, w, nc] raw logits
                target = torch.zeros_like(cls, dtype=torch.bool)
                for c, (x1, y1, x2, y2) in TARGETS:
                    cy, cx = ((y1 + y2) // 2 + pad) // s, ((x1 + x2) // 2) // s
                    target[cy, cx, c] = True
                # Lift the target cells to a confident logit, push every other cell below logit(0.1).
                loss = loss + torch.relu(4 - cls[target]).sum() + 0.05 * torch.relu(cls[~target] + 2.2).sum()
            tv = (delta[..., 1:, :] - delta[..., :-1, :]).abs().mean() + (delta[..., 1:] - delta[..., :-1]).abs().mean()
            loss = loss + 50 * tv
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 20 == 0:
                print(step, float(loss.detach()))
    out = ((base + delta).clamp(0, 1)[0].permute(1, 2, 0).detach().numpy()[..., ::-1] * 255).round().astype(np.uint8)
    cv2.imwrite(args.output, out, [cv2.IMWRITE_JPEG_QUALITY, 92])


if __name__ == "__main__":
    main()
